"""The Optuna objective: measure one point of the space, return its objective values, set its constraints.

The measurement is injected (:data:`Measurer`, ``CaseSpec -> CaseOutcome``): the CLI passes
:meth:`BenchmarkSession.run_case`, tests pass a deterministic fake, the search-efficiency benchmark replays
a measured table. Constraints go through :meth:`optuna.Trial.set_constraint` (Optuna 5; ``constraints_func``
is deprecated): TPE, NSGA-II, ``study.best_trial`` and ``study.best_trials`` read ``trial.constraints``.

How a trial ends:

- measured: ``COMPLETE`` with its values; feasible when every constraint is <= 0.
- measured but not valid (``BenchmarkResult.valid`` false: CI, spread, stability or duration out of bounds):
  ``COMPLETE`` with its values, the user attributes ``valid = False`` and ``invalid_reasons``, and the
  constraint ``invalid_measurement = 1`` (``0`` for a valid one), so it is never the best trial nor on the
  Pareto front. A constraint rather than a penalised value: the values stay what was measured (a made-up
  penalty would be an invented number), and TPE/NSGA-II still see where the point landed; the cost is that
  the sampler treats a noisy region like an infeasible one, which is what a user who asked for valid
  results wants.
- out of memory: ``PRUNED`` with the constraint ``out_of_memory = 1`` (infeasible: TPE learns to avoid it) and
  no values, because none were measured (a made-up "worst" value would be an invented number).
- any other failure of the case: ``FAIL`` (a :class:`MeasurementError` that the study catches).
- a point already finished in the study: its earlier outcome is reused (values, constraints, metrics) and the
  trial carries ``duplicate_of``; TPE often re-proposes the best categorical point, and measuring it again
  would only spend the budget.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import optuna
from optuna.trial import TrialState

from mlperf_track import metrics as m
from mlperf_track.errors import MeasurementError, OutOfMemoryError
from mlperf_track.tuning.space import SearchSpace, TrialPoint

if TYPE_CHECKING:
    from mlperf_track.engine.result import BenchmarkResult
    from mlperf_track.pipeline.events import CaseOutcome
    from mlperf_track.spec import CaseSpec

logger = logging.getLogger(__name__)

#: Measures one case; must not raise for the case's own failure (return it in the outcome).
Measurer = Callable[["CaseSpec"], "CaseOutcome"]

#: Trial user attribute keys.
ATTR_CASE: Final = "case"
ATTR_METRICS: Final = "metrics"
ATTR_ERROR_TYPE: Final = "error.type"
ATTR_ERROR_MESSAGE: Final = "error.message"
ATTR_DUPLICATE_OF: Final = "duplicate_of"
ATTR_MEMORY_METRIC: Final = "memory_metric"
ATTR_VALID: Final = "valid"
ATTR_INVALID_REASONS: Final = "invalid_reasons"
#: Constraint names (values <= 0 mean satisfied).
OUT_OF_MEMORY: Final = "out_of_memory"
MEMORY: Final = "memory"
P99: Final = "p99_latency"
ACCURACY_DROP: Final = "accuracy_drop"
INVALID_MEASUREMENT: Final = "invalid_measurement"
#: Memory metrics a limit is checked against, most complete first. On CUDA only figures that see the memory of
#: every runtime count: NVML's per-process peak (missing where NVML cannot see the process, e.g. in a container
#: with its own PID namespace), else the device's used memory above the baseline taken before the case. torch's
#: allocator peaks do not see ONNX Runtime or TensorRT, so a limit is never checked against them: with neither
#: figure the memory is unknown and the trial fails (it is never reported feasible).
MEMORY_KEYS: Final = {
    "cuda": (m.GPU_PROCESS_PEAK, m.GPU_DEVICE_DELTA_PEAK),
    "cpu": (m.CPU_RSS_PEAK,),
}


@dataclass(frozen=True)
class Target:
    """One objective: a metric and its direction."""

    name: str
    metric: str
    direction: str


TARGETS: Final = {
    "throughput": Target("throughput", m.THROUGHPUT, "maximize"),
    "latency": Target("latency", m.LATENCY_P99, "minimize"),
    "accuracy": Target("accuracy", m.ACCURACY_TOP1, "maximize"),
}


def targets_for(objective: str, *, with_accuracy: bool) -> tuple[Target, ...]:
    """The targets of ``--objective`` (``multi``: throughput, p99 latency and, when measured, accuracy)."""
    if objective == "multi":
        names = ("throughput", "latency", "accuracy") if with_accuracy else ("throughput", "latency")
        return tuple(TARGETS[name] for name in names)
    return (TARGETS[objective],)


@dataclass(frozen=True)
class Limits:
    """The constraints of a study; ``None`` switches one off.

    Constraint values are relative, so that TPE and NSGA-II, which add up violations, compare them on one
    scale: ``peak / limit - 1`` and ``p99 / slo - 1``; the accuracy drop is already a fraction
    (``drop - max_drop``).
    """

    memory_limit_mb: float | None = None
    p99_slo_ms: float | None = None
    max_accuracy_drop: float | None = None

    def constraints(self, metrics: dict[str, float], device: str) -> tuple[dict[str, float], dict[str, str]]:
        """Constraint values of a measured case, and attributes saying which metric was used.

        Raises:
            MeasurementError: A limit is set but the metric it needs was not measured.
        """
        values: dict[str, float] = {}
        attrs: dict[str, str] = {}
        if self.memory_limit_mb is not None:
            keys = MEMORY_KEYS["cuda" if device.startswith("cuda") else "cpu"]
            key = next((key for key in keys if key in metrics), None)
            if key is None:
                raise MeasurementError(
                    f"a memory limit is set but this case's memory is unknown: none of {', '.join(keys)} was "
                    "measured (install nvidia-ml-py for NVML, see the metrics' notes); the trial is not feasible"
                )
            values[MEMORY] = metrics[key] / self.memory_limit_mb - 1.0
            attrs[ATTR_MEMORY_METRIC] = key
        if self.p99_slo_ms is not None:
            values[P99] = _required(metrics, m.LATENCY_P99, "--p99-slo-ms") / self.p99_slo_ms - 1.0
        if self.max_accuracy_drop is not None:
            # A language model has no classifier top-1: its limit reads the next-token top-1 change.
            key = (
                m.ACCURACY_TOP1_DELTA
                if m.ACCURACY_NEXT_TOKEN_TOP1_DELTA not in metrics
                else m.ACCURACY_NEXT_TOKEN_TOP1_DELTA
            )
            drop = -_required(metrics, key, "--max-accuracy-drop")
            values[ACCURACY_DROP] = drop - self.max_accuracy_drop
        return values, attrs


def _required(metrics: dict[str, float], key: str, needed_by: str) -> float:
    if key not in metrics:
        raise MeasurementError(f"{needed_by} needs {key}, which was not measured for this case")
    return metrics[key]


def is_feasible(trial: optuna.trial.FrozenTrial) -> bool:
    """Finished with values and every constraint satisfied."""
    return trial.state == TrialState.COMPLETE and all(value <= 0 for value in trial.constraints.values())


class TrialObjective:
    """The callable handed to :meth:`optuna.Study.optimize`.

    Args:
        space: The search space.
        targets: What to optimise (the study's directions must match).
        limits: The constraints.
        measure: Measures a case.
        template: Case fields that do not vary (model, device, image size, dataset).
        reuse_duplicates: Reuse the outcome of a point that already finished in the study.
    """

    def __init__(
        self,
        space: SearchSpace,
        targets: tuple[Target, ...],
        limits: Limits,
        measure: Measurer,
        template: CaseSpec,
        *,
        reuse_duplicates: bool = True,
    ) -> None:
        self.space = space
        self.targets = targets
        self.limits = limits
        self.measure = measure
        self.template = template
        self.reuse_duplicates = reuse_duplicates
        #: Outcomes measured in this process, by trial number (read by the MLflow adapter).
        self.outcomes: dict[int, CaseOutcome] = {}

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        point = self.space.suggest(trial)
        case = point.to_case(self.template)
        trial.set_user_attr(ATTR_CASE, case.name)
        for key, value in point.attrs().items():
            trial.set_user_attr(key, value)
        if self.reuse_duplicates:
            previous = self._finished_twin(trial)
            if previous is not None:
                return self._reuse(trial, previous)
        outcome = self.measure(case)
        self.outcomes[trial.number] = outcome
        if outcome.result is None:
            return self._failed(trial, case, outcome.error)
        metrics = dict(outcome.result.metrics)
        trial.set_user_attr(ATTR_METRICS, metrics)
        try:
            constraints, attrs = self.limits.constraints(metrics, case.device)
            values = tuple(_required(metrics, t.metric, f"the {t.name} objective") for t in self.targets)
        except MeasurementError as error:
            return self._failed(trial, case, error)
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        for key, value in {**constraints, **_validity(trial, outcome.result)}.items():
            trial.set_constraint(key, value)
        return values[0] if len(values) == 1 else values

    def forget(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """Study callback (after the MLflow adapter's): drop the outcome of a finished trial from memory."""
        self.outcomes.pop(trial.number, None)

    def _failed(self, trial: optuna.Trial, case: CaseSpec, error: BaseException | None) -> float:
        error = error or MeasurementError(f"{case.name} produced no result")
        trial.set_user_attr(ATTR_ERROR_TYPE, type(error).__name__)
        trial.set_user_attr(ATTR_ERROR_MESSAGE, str(error)[:2000])
        if isinstance(error, OutOfMemoryError):
            trial.set_constraint(OUT_OF_MEMORY, 1.0)
            raise optuna.TrialPruned(f"{case.name} ran out of memory (infeasible)")
        raise MeasurementError(f"{case.name} failed: {type(error).__name__}: {error}") from error

    def _finished_twin(self, trial: optuna.Trial) -> optuna.trial.FrozenTrial | None:
        """An earlier trial of the study with the same params that finished with a real outcome."""
        states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        for other in trial.study.get_trials(deepcopy=False, states=states):
            if other.number == trial.number or other.params != trial.params:
                continue
            if other.state == TrialState.FAIL and ATTR_ERROR_TYPE not in other.user_attrs:
                continue  # a worker died or the trial was interrupted: not an outcome of the point itself
            return other
        return None

    def _reuse(self, trial: optuna.Trial, previous: optuna.trial.FrozenTrial) -> float | tuple[float, ...]:
        origin = previous.user_attrs.get(ATTR_DUPLICATE_OF, previous.number)
        trial.set_user_attr(ATTR_DUPLICATE_OF, origin)
        logger.info("trial %d repeats trial %d (%s): reusing its outcome", trial.number, origin, trial.params)
        for key in (
            ATTR_METRICS,
            ATTR_MEMORY_METRIC,
            ATTR_ERROR_TYPE,
            ATTR_ERROR_MESSAGE,
            ATTR_VALID,
            ATTR_INVALID_REASONS,
        ):
            if key in previous.user_attrs:
                trial.set_user_attr(key, previous.user_attrs[key])
        for key, value in previous.constraints.items():
            trial.set_constraint(key, value)
        if previous.state == TrialState.PRUNED:
            raise optuna.TrialPruned(f"repeats trial {origin}, which ran out of memory")
        if previous.state == TrialState.FAIL:
            raise MeasurementError(f"repeats trial {origin}, which failed: {previous.user_attrs[ATTR_ERROR_MESSAGE]}")
        values: Any = previous.values
        return values[0] if len(values) == 1 else tuple(values)


def _validity(trial: optuna.Trial, result: BenchmarkResult) -> dict[str, float]:
    """Flag an invalid measurement (user attributes) and return its constraint (1: invalid, 0: valid)."""
    trial.set_user_attr(ATTR_VALID, result.valid)
    if not result.valid:
        trial.set_user_attr(ATTR_INVALID_REASONS, list(result.invalid_reasons))
        logger.warning("trial %d: measurement not valid: %s", trial.number, "; ".join(result.invalid_reasons))
    return {INVALID_MEASUREMENT: 0.0 if result.valid else 1.0}


def point_of(space: SearchSpace, trial: optuna.trial.FrozenTrial) -> TrialPoint | None:
    """The point a finished trial measured (``None`` when it has no complete set of params)."""
    try:
        return space.point(trial.params)
    except (KeyError, IndexError, ValueError):
        return None
