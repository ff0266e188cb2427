"""Warm start from MLflow: a repeated study answers from what earlier studies measured, in full or briefly."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState
from tuning_fakes import FakeBackend, small_space

from mlperf_track.tuning import objective as o
from mlperf_track.tuning.config import TuneConfig
from mlperf_track.tuning.pruning import SHORT_STEP
from mlperf_track.tuning.runner import run_tune

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _config(n_trials: int, warm_start: str = "auto") -> TuneConfig:
    return TuneConfig.create("fakenet", device="cpu", n_trials=n_trials, seed=0, storage="none", warm_start=warm_start)


def test_a_repeated_study_measures_nothing_and_knows_what_was_pruned(tracking: str) -> None:
    first_backend = FakeBackend(small_space())
    first = run_tune(_config(10, warm_start="none"), first_backend)
    ended = {trial.user_attrs.get(o.ATTR_OUTCOME) for trial in first.study.trials}
    assert {o.MEASURED, o.PRUNED} <= ended  # both kinds to reuse

    again_backend = FakeBackend(small_space())
    again = run_tune(_config(10), again_backend)
    assert again_backend.measured == []  # answered from what was known
    assert again.reused == 10 and again.summary.n_measured == 0 and again.summary.n_pruned == 0
    by_point = {(t.params["config"], t.params["batch_size"]): t for t in first.study.trials}
    for trial in again.study.trials:
        origin = by_point[(trial.params["config"], trial.params["batch_size"])]
        assert trial.user_attrs[o.ATTR_OUTCOME] == o.REUSED
        assert trial.state == origin.state
        if trial.state == TrialState.PRUNED:  # the short figure, at the short step, with its constraints
            assert trial.user_attrs[o.ATTR_FIDELITY] == o.SHORT
            assert trial.intermediate_values[SHORT_STEP] == origin.intermediate_values[SHORT_STEP]
            assert trial.constraints == origin.constraints
        else:
            assert trial.values == origin.values
    assert [t.params for t in again.summary.best] == [t.params for t in first.summary.best]


def test_a_larger_study_measures_only_points_not_known(tracking: str) -> None:
    first = run_tune(_config(6, warm_start="none"), FakeBackend(small_space()))
    known = {(t.params["config"], t.params["batch_size"]) for t in first.study.trials}
    backend = FakeBackend(small_space())
    larger = run_tune(_config(10), backend)
    assert larger.reused == 6
    fresh = [t for t in larger.study.trials if t.user_attrs.get(o.ATTR_OUTCOME) != o.REUSED]
    assert len(fresh) == 4 and backend.measured
    assert all((t.params["config"], t.params["batch_size"]) not in known for t in fresh)
