"""The cost-aware sampler: its first proposal, how it prices a composition and a recipe not built yet (from the
builds of its own kind: recipes that train apart from those that calibrate), where the backend and the trial runs
say what a trial built, and a trial another worker is still suggesting (it holds only part of a point)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import optuna
import pytest
from tuning_fakes import FakeBackend, runs_of, small_space

from mlperf_track.spec import TimingConfig
from mlperf_track.tuning.backend import SessionBackend
from mlperf_track.tuning.config import TuneConfig
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


def _built(number: int, config: str, built: list[str], seconds: float) -> optuna.trial.FrozenTrial:
    """A finished trial that built ``built`` in ``seconds``."""
    from optuna.distributions import CategoricalDistribution

    from mlperf_track.tuning import costs

    return optuna.trial.create_trial(
        params={CONFIG_PARAM: config},
        distributions={CONFIG_PARAM: CategoricalDistribution([config])},
        value=1.0,
        user_attrs={
            costs.ATTR_BUILT: built,
            costs.ATTR_BUILD_S: seconds,
            costs.ATTR_PREPARE_S: seconds,
            costs.ATTR_MEASURE_S: 1.0,
        },
    )


def test_a_recipe_that_trains_is_priced_by_the_builds_that_trained_not_by_the_calibrations() -> None:
    calibration = _built(0, "quantized_int8_ort/onnxruntime/int8", ["quantized_int8_ort"], 7.0)
    pruning = _built(1, "pruned_structured/eager/fp32", ["pruned_structured"], 50.0)
    model = CostModel(small_space((8,)), has_variant=lambda name: False)
    model.update([calibration])
    assert model.step_build_s("distilled") == 7.0  # nothing that trained was built yet: any build
    model.update([calibration, pruning])
    assert model.step_build_s("distilled") == 50.0  # trains, like the pruning's recovery
    assert model.step_build_s("quantized_int8_nncf") == 7.0  # calibrates, like the ORT quantization
    assert model.step_build_s("pruned_structured") == 50.0
    again = _built(2, "pruned_structured/eager/fp32", ["pruned_structured"], 40.0)
    model.update([calibration, pruning, again])
    assert model.step_build_s("pruned_structured") == 45.0  # its own builds first


def test_a_composition_built_from_scratch_counts_as_the_build_of_the_step_that_trained() -> None:
    composition = "pruned_structured+quantized_int8_ort"
    both = _built(0, f"{composition}/onnxruntime/int8", ["pruned_structured", composition], 58.0)
    calibration = _built(1, "quantized_int8_nncf/openvino/int8", ["quantized_int8_nncf"], 6.0)
    model = CostModel(small_space((8,)), has_variant=lambda name: False)
    model.update([both, calibration])
    assert model.step_build_s("distilled") == 58.0
    assert model.step_build_s("quantized_int8_pt2e") == 6.0


def _variant_config(**values: object) -> TuneConfig:
    return TuneConfig.create(
        "tinycnn",
        device="cpu",
        image_size=16,
        dataset="synthetic",
        variants=("quantized_bf16",),
        runtimes=("eager",),
        precisions=("fp32",),
        batch_sizes=(2,),
        storage="none",
        warm_start="none",
        max_accuracy_drop=None,
        timing=TimingConfig(warmup_iters=1, warmup_s=0.0, min_iters=3, max_iters=5, max_time_s=0.2),
        **values,
    )


def test_the_session_backend_reports_the_variants_each_measurement_built() -> None:
    backend = SessionBackend(_variant_config())
    try:
        case = dataclasses.replace(backend.template(), variant="quantized_bf16", precision="bf16")
        backend.measure(case)
        first = backend.last_costs()
        backend.measure(case)
        second = backend.last_costs()
    finally:
        backend.close()
    assert first is not None and first.built == ("quantized_bf16",) and first.variant_build_s > 0
    assert second is not None and second.built == () and second.variant_build_s < first.variant_build_s


def test_a_trial_run_names_the_variants_its_trial_built(tracking: str, tmp_path: Path) -> None:
    from mlperf_track import metrics as m
    from mlperf_track.tuning.runner import run_tune

    run_tune(_variant_config(n_trials=4, output_dir=tmp_path / "out"))
    trials = [run for run in runs_of(tracking) if "mlflow.parentRunId" in run.data.tags]
    built = {run.data.params.get("variant"): run.data.tags.get(m.TRIAL_VARIANT_BUILT_TAG) for run in trials}
    assert built.get("quantized_bf16") == "quantized_bf16"
    assert built.get("baseline") is None  # built before the study, by no trial
