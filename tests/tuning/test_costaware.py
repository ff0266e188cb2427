"""The cost-aware sampler: its first proposal, how it prices a composition, and a trial another worker is still
suggesting (it holds only part of a point)."""

from __future__ import annotations

import optuna
import pytest
from tuning_fakes import FakeBackend, small_space

from mlperf_track.tuning.costaware import CostAwareSampler
from mlperf_track.tuning.costs import CostModel
from mlperf_track.tuning.sampling import taken_points
from mlperf_track.tuning.space import CONFIG_PARAM, Choice, SearchSpace, TrialPoint

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


@pytest.mark.parametrize(("direction", "maximize", "expected"), [("maximize", True, 64), ("minimize", False, 1)])
def test_the_first_trial_is_a_baseline_at_the_batch_size_the_objective_favours(
    direction: str, maximize: bool, expected: int
) -> None:
    space = small_space((1, 8, 64))
    sampler = CostAwareSampler(space, FakeBackend(space).template(), CostModel(space), n_trials=6, maximize=maximize)
    study = optuna.create_study(direction=direction, sampler=sampler)
    point = space.suggest(study.ask())
    assert point.choice.variant == "baseline" and point.batch_size == expected


def test_a_composition_is_priced_for_each_of_its_steps_still_to_build() -> None:
    choices = (
        Choice("baseline", "eager", "fp32"),
        Choice("pruned_structured", "eager", "fp32"),
        Choice("pruned_structured+quantized_int8_ort", "onnxruntime", "int8"),
    )
    space = SearchSpace(choices, (8,))
    template = FakeBackend(space).template()
    built = {"baseline"}
    model = CostModel(space, has_variant=built.__contains__)
    composition = TrialPoint(choices[2], 8)
    nothing_built = model.predict(composition, template).variant_build_s
    built.add("pruned_structured")
    step_built = model.predict(composition, template).variant_build_s
    built.add(choices[2].variant)
    assert nothing_built == 2 * step_built > 0
    assert model.predict(composition, template).variant_build_s == 0.0
