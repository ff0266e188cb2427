"""The cost-aware sampler among workers: a trial another worker is still suggesting holds only part of a point."""

from __future__ import annotations

import optuna
from tuning_fakes import FakeBackend, small_space

from mlperf_track.tuning.costaware import CostAwareSampler
from mlperf_track.tuning.costs import CostModel
from mlperf_track.tuning.sampling import taken_points
from mlperf_track.tuning.space import CONFIG_PARAM

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_a_trial_still_being_suggested_elsewhere_is_skipped_not_read_as_a_point() -> None:
    space = small_space((1, 8))
    sampler = CostAwareSampler(space, FakeBackend(space).template(), CostModel(space), n_trials=6)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    elsewhere = study.ask()  # another worker, between its first and its second suggestion
    elsewhere.suggest_categorical(CONFIG_PARAM, [choice.key for choice in space.choices])
    assert not space.holds_point(elsewhere.params)
    trial = study.ask()
    point = space.suggest(trial)
    assert point in space.points() and space.holds_point(trial.params)
    taken = taken_points(space, study.get_trials(deepcopy=False), number=-1)
    assert len(taken) == 1  # the whole point only
