"""The objective: values, constraints through set_constraint, out-of-memory as infeasible, duplicates reused."""

from __future__ import annotations

import optuna
import pytest
from optuna.study import StudyDirection
from optuna.trial import TrialState
from tuning_fakes import FakeBackend, fake_metrics, small_space

from mlperf_track import metrics as m
from mlperf_track.errors import MeasurementError
from mlperf_track.tuning.objective import (
    ACCURACY_DROP,
    ATTR_DUPLICATE_OF,
    ATTR_ERROR_TYPE,
    MEMORY,
    OUT_OF_MEMORY,
    P99,
    Limits,
    TrialObjective,
    is_feasible,
    targets_for,
)
from mlperf_track.tuning.results import summarize, trials_frame
from mlperf_track.tuning.space import BATCH_PARAM, CONFIG_PARAM

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _study_with(
    backend: FakeBackend, limits: Limits, objective: str = "throughput", reuse: bool = True
) -> tuple[optuna.Study, TrialObjective]:
    targets = targets_for(objective, with_accuracy=backend.measures_accuracy)
    directions = [StudyDirection.MAXIMIZE if t.direction == "maximize" else StudyDirection.MINIMIZE for t in targets]
    study = optuna.create_study(
        directions=directions, sampler=optuna.samplers.GridSampler(backend.space.grid(), seed=0)
    )
    trial_objective = TrialObjective(
        backend.space, targets, limits, backend.measure, backend.template(), reuse_duplicates=reuse
    )
    return study, trial_objective


def test_grid_study_with_memory_limit_finds_the_feasible_optimum() -> None:
    backend = FakeBackend(small_space())
    limit = 700.0
    study, objective = _study_with(backend, Limits(memory_limit_mb=limit))
    study.optimize(objective, n_trials=backend.space.size, catch=(MeasurementError,))
    feasible_values = [
        fake_metrics(p.to_case(backend.template()))[m.THROUGHPUT]
        for p in backend.space.points()
        if fake_metrics(p.to_case(backend.template()))[m.CPU_RSS_PEAK] <= limit
    ]
    summary = summarize(study, objective.targets)
    assert summary.found
    best = summary.best[0]
    assert best.values[0] == pytest.approx(max(feasible_values))
    assert best.user_attrs["metrics"][m.CPU_RSS_PEAK] <= limit
    assert best.constraints[MEMORY] <= 0
    # the unconstrained optimum (eager bf16 at batch 128, 1068 MB) broke the limit and is marked so
    infeasible = [t for t in study.trials if not is_feasible(t)]
    assert infeasible and all(t.constraints[MEMORY] > 0 for t in infeasible)
    assert summary.n_infeasible == len(infeasible)


def test_out_of_memory_is_an_infeasible_pruned_trial_not_a_crash() -> None:
    backend = FakeBackend(small_space((1, 128)), capacity_mb=1100.0)
    study, objective = _study_with(backend, Limits(memory_limit_mb=5000.0))
    study.optimize(objective, n_trials=backend.space.size, catch=(MeasurementError,))
    oom = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert len(oom) == 2  # fp32 at 128 on both runtimes needs 1836 MB
    for trial in oom:
        assert trial.constraints == {OUT_OF_MEMORY: 1.0}
        assert trial.values is None
        assert trial.user_attrs[ATTR_ERROR_TYPE] == "OutOfMemoryError"
        assert not is_feasible(trial)
    frame = trials_frame(study, objective.targets)
    assert frame.loc[frame["state"] == "PRUNED", "feasible"].eq(False).all()


def test_failed_case_is_a_failed_trial_with_the_error_recorded() -> None:
    backend = FakeBackend(small_space((1,)), failing=frozenset({"baseline/onnxruntime/fp32"}))
    study, objective = _study_with(backend, Limits())
    study.optimize(objective, n_trials=backend.space.size, catch=(MeasurementError,))
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert [t.params[CONFIG_PARAM] for t in failed] == ["baseline/onnxruntime/fp32"]
    assert failed[0].user_attrs[ATTR_ERROR_TYPE] == "ExportError"
    assert objective.outcomes[failed[0].number].error is not None


def test_p99_and_accuracy_constraints_are_relative_and_named() -> None:
    backend = FakeBackend(small_space((8,)))
    study, objective = _study_with(backend, Limits(p99_slo_ms=40.0, max_accuracy_drop=0.01), objective="multi")
    study.optimize(objective, n_trials=backend.space.size, catch=(MeasurementError,))
    for trial in study.trials:
        metrics = trial.user_attrs["metrics"]
        assert trial.constraints[P99] == pytest.approx(metrics[m.LATENCY_P99] / 40.0 - 1)
        assert trial.constraints[ACCURACY_DROP] == pytest.approx(-metrics[m.ACCURACY_TOP1_DELTA] - 0.01)
        assert len(trial.values) == 3  # throughput, p99, top-1
    bf16 = [t for t in study.trials if "bf16" in t.params[CONFIG_PARAM]]
    assert bf16 and all(t.constraints[ACCURACY_DROP] > 0 for t in bf16)  # 1.5 points > 1 point allowed
    front = summarize(study, objective.targets).best
    assert [t.params[CONFIG_PARAM] for t in front] == ["baseline/onnxruntime/fp32"]  # eager fp32: p99 48 ms


def test_duplicate_point_reuses_the_earlier_outcome_without_measuring() -> None:
    backend = FakeBackend(small_space((1, 2)))
    study, objective = _study_with(backend, Limits(memory_limit_mb=1000.0))
    params = {CONFIG_PARAM: "baseline/eager/bf16", BATCH_PARAM: 1}
    study.enqueue_trial(params)
    study.enqueue_trial(params)
    study.optimize(objective, n_trials=2)
    first, second = study.trials
    assert len(backend.measured) == 1
    assert second.user_attrs[ATTR_DUPLICATE_OF] == first.number
    assert second.values == first.values
    assert second.constraints == first.constraints
    assert summarize(study, objective.targets).n_measured == 1


def test_memory_limit_without_memory_metric_fails_the_trial_clearly() -> None:
    backend = FakeBackend(small_space((1,)), metrics=lambda case: {m.THROUGHPUT: 10.0, m.LATENCY_P99: 1.0})
    study, objective = _study_with(backend, Limits(memory_limit_mb=100.0))
    study.optimize(objective, n_trials=1, catch=(MeasurementError,))
    assert study.trials[0].state == TrialState.FAIL
    assert "memory limit is set but" in study.trials[0].user_attrs["error.message"]


def test_multi_without_accuracy_has_two_objectives() -> None:
    assert [t.name for t in targets_for("multi", with_accuracy=False)] == ["throughput", "latency"]
    assert [t.direction for t in targets_for("latency", with_accuracy=True)] == ["minimize"]


def test_a_gpu_memory_limit_uses_only_figures_that_see_every_runtime() -> None:
    limits = Limits(memory_limit_mb=1000.0)
    allocator_only = {m.GPU_PEAK_ALLOCATED: 100.0, m.GPU_PEAK_RESERVED: 200.0}  # blind to ONNX Runtime/TensorRT
    with pytest.raises(MeasurementError, match="memory is unknown"):
        limits.constraints(allocator_only, "cuda")
    values, attrs = limits.constraints({**allocator_only, m.GPU_DEVICE_DELTA_PEAK: 1500.0}, "cuda")
    assert values[MEMORY] == pytest.approx(0.5) and attrs["memory_metric"] == m.GPU_DEVICE_DELTA_PEAK
    values, attrs = limits.constraints(
        {**allocator_only, m.GPU_DEVICE_DELTA_PEAK: 1500.0, m.GPU_PROCESS_PEAK: 900.0}, "cuda"
    )
    assert values[MEMORY] == pytest.approx(-0.1) and attrs["memory_metric"] == m.GPU_PROCESS_PEAK


def test_a_gpu_case_of_unknown_memory_is_never_feasible() -> None:
    backend = FakeBackend(
        small_space((1,)),
        metrics=lambda case: {m.THROUGHPUT: 10.0, m.LATENCY_P99: 1.0, m.GPU_PEAK_RESERVED: 10.0},
        device="cuda",
    )
    study, objective = _study_with(backend, Limits(memory_limit_mb=100.0))
    study.optimize(objective, n_trials=1, catch=(MeasurementError,))
    assert study.trials[0].state == TrialState.FAIL and not is_feasible(study.trials[0])
    assert "memory is unknown" in study.trials[0].user_attrs["error.message"]
