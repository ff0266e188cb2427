"""The Optuna objective: measure one point of the space, return its objective values, set its constraints.

The measurement is injected (:data:`Measurer`, ``(case[, timing]) -> CaseOutcome``): the CLI passes the
session backend, tests pass a deterministic fake, the search-efficiency benchmark replays a measured table.
Constraints go through :meth:`optuna.Trial.set_constraint` (Optuna 5; ``constraints_func`` is deprecated):
TPE, NSGA-II, ``study.best_trial`` and ``study.best_trials`` read ``trial.constraints``.

Multi-fidelity (one objective, a measurer that takes ``timing``): the point is first measured briefly; a
limit that the short measurement already shows broken (accuracy, memory) or the pruner
(:mod:`mlperf_track.tuning.pruning`) ends it ``PRUNED`` with its short figures under ``short_metrics`` and
``fidelity = short``; otherwise it is measured in full. Every trial records its ``outcome`` (``measured``,
``pruned``, ``reused``, ``failed``, ``out_of_memory``, ``over_budget``), the ``fidelity`` it reached, and its
cost (:mod:`mlperf_track.tuning.costs`).

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
  trial carries ``duplicate_of``. The samplers are wrapped so that they do not re-propose a measured point
  (:mod:`mlperf_track.tuning.sampling`); this only happens once every point is measured, and then the runner
  ends the study saying so.
- a predicted cost beyond the time budget: ``PRUNED`` with ``outcome = over_budget``, nothing measured.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final, NoReturn

import optuna
from optuna.trial import TrialState

from mlperf_track import metrics as m
from mlperf_track.errors import MeasurementError, OutOfMemoryError
from mlperf_track.interrupts import release_unwound_frames
from mlperf_track.tuning import costs as c
from mlperf_track.tuning.pruning import ATTR_SHORT_BOUND, FULL_STEP, SHORT_STEP, optimistic_bound
from mlperf_track.tuning.space import SearchSpace, TrialPoint

if TYPE_CHECKING:
    from mlperf_track.engine.result import BenchmarkResult
    from mlperf_track.pipeline.events import CaseOutcome
    from mlperf_track.spec import CaseSpec, TimingConfig
    from mlperf_track.tuning.budget import TimeBudget

logger = logging.getLogger(__name__)

#: Measures one case (with an optional ``timing=`` keyword for the short measurement); must not raise for the
#: case's own failure (return it in the outcome).
Measurer = Callable[..., "CaseOutcome"]
#: The costs of the last measurement call, when the backend reports them.
CostReader = Callable[[], "c.TrialCosts | None"]

#: Trial user attribute keys.
ATTR_CASE: Final = "case"
ATTR_METRICS: Final = "metrics"
ATTR_ERROR_TYPE: Final = "error.type"
ATTR_ERROR_MESSAGE: Final = "error.message"
ATTR_DUPLICATE_OF: Final = "duplicate_of"
ATTR_MEMORY_METRIC: Final = "memory_metric"
ATTR_VALID: Final = "valid"
ATTR_INVALID_REASONS: Final = "invalid_reasons"
ATTR_SHORT_METRICS: Final = "short_metrics"
ATTR_OUTCOME: Final = "outcome"
ATTR_FIDELITY: Final = "fidelity"
ATTR_PRUNED_BECAUSE: Final = "pruned_because"
#: The trial run's tag of :data:`ATTR_PRUNED_BECAUSE` (read back by the warm start).
TAG_PRUNED_BECAUSE: Final = "trial.pruned_because"
ATTR_ERROR_STAGE: Final = "error.stage"
ATTR_REUSED_FROM: Final = "reused_from"
#: Values of :data:`ATTR_OUTCOME`.
MEASURED: Final = "measured"
PRUNED: Final = "pruned"
REUSED: Final = "reused"
FAILED: Final = "failed"
OUT_OF_MEMORY_OUTCOME: Final = "out_of_memory"
OVER_BUDGET: Final = "over_budget"
#: Values of :data:`ATTR_FIDELITY`.
SHORT: Final = "short"
FULL: Final = "full"
NONE: Final = "none"
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


@dataclass(frozen=True)
class Fidelity:
    """How trials are measured: the short first window (``None``: every trial in full at once)."""

    short: TimingConfig | None = None


class TrialObjective:
    """The callable handed to :meth:`optuna.Study.optimize`.

    Args:
        space: The search space.
        targets: What to optimise (the study's directions must match).
        limits: The constraints.
        measure: Measures a case (``measure(case)``, or ``measure(case, timing=...)`` for multi-fidelity).
        template: Case fields that do not vary (model, device, image size, dataset).
        fidelity: The short measurement (used with one objective and a measurer that takes ``timing``).
        full_timing: The full measurement's timing (its window is capped by the time budget).
        costs: Reads the costs of the last measurement call (else the clock alone times each call).
        budget: The study's time budget.
        cost_model: Predicts a point's cost (checked against the budget before measuring).
        clock: Seconds now (the budget's clock).
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
        fidelity: Fidelity | None = None,
        full_timing: TimingConfig | None = None,
        costs: CostReader | None = None,
        budget: TimeBudget | None = None,
        cost_model: c.CostModel | None = None,
        clock: Callable[[], float] = time.monotonic,
        reuse_duplicates: bool = True,
    ) -> None:
        self.space = space
        self.targets = targets
        self.limits = limits
        self.measure = measure
        self.template = template
        self.takes_timing = "timing" in inspect.signature(measure).parameters
        short = (fidelity or Fidelity()).short
        self.short = short if self.takes_timing and len(targets) == 1 else None
        self.full_timing = full_timing
        self.costs = costs
        self.budget = budget
        self.cost_model = cost_model
        self.clock = budget.clock if budget is not None else clock
        self.reuse_duplicates = reuse_duplicates
        #: Outcomes measured in this process, by trial number (read by the MLflow adapter).
        self.outcomes: dict[int, CaseOutcome] = {}

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        ledger: _Ledger | None = None  # from the measurement on: the trial's costs, written when it ends
        try:
            point = self.space.suggest(trial)
            case = point.to_case(self.template)
            trial.set_user_attr(ATTR_CASE, case.name)
            for key, value in point.attrs().items():
                trial.set_user_attr(key, value)
            if self.reuse_duplicates:
                previous = self._finished_twin(trial)
                if previous is not None:
                    return self._reuse(trial, previous)
            self._check_budget(trial, point)
            ledger = _Ledger(self.clock())
            return self._measure_point(trial, case, ledger)
        except KeyboardInterrupt as interrupt:
            # Before the ledger and then Optuna write the trial's end: an interrupted read must not lock them out.
            release_unwound_frames(interrupt)
            raise
        finally:
            if ledger is not None:
                ledger.store(trial, self.clock())

    def _check_budget(self, trial: optuna.Trial, point: TrialPoint) -> None:
        if self.budget is None or not self.budget.limited or self.cost_model is None:
            return
        self.cost_model.update(trial.study.get_trials(deepcopy=False))
        predicted = self.cost_model.admission_s(point, self.template)
        if not self.budget.fits(predicted):
            trial.set_user_attr(ATTR_OUTCOME, OVER_BUDGET)
            trial.set_user_attr(ATTR_FIDELITY, NONE)
            raise optuna.TrialPruned(
                f"not measured: predicted {predicted:.0f} s, {max(0.0, self.budget.remaining()):.0f} s of the "
                "time budget left"
            )

    def _call(self, case: CaseSpec, timing: TimingConfig | None, ledger: _Ledger, fidelity: str) -> CaseOutcome:
        start = self.clock()
        outcome = self.measure(case, timing=timing) if timing is not None else self.measure(case)
        ledger.add(fidelity, self.clock() - start, self.costs() if self.costs is not None else None)
        return outcome

    def _full_timing(self) -> TimingConfig | None:
        """The full timing, its window capped to what the time budget has left."""
        if self.full_timing is None or self.budget is None or not self.budget.limited:
            return None
        left = self.budget.remaining()
        if left >= self.full_timing.max_time_s:
            return None
        return replace(self.full_timing, max_time_s=max(left, 0.05), min_time_s=min(self.full_timing.min_time_s, left))

    def _measure_point(self, trial: optuna.Trial, case: CaseSpec, ledger: _Ledger) -> float | tuple[float, ...]:
        if self.short is not None:
            outcome = self._call(case, self.short, ledger, SHORT)
            if outcome.result is None:
                self._failed(trial, case, outcome.error, ledger)
            self._short_verdict(trial, case, outcome.result, ledger)
        outcome = self._call(case, self._full_timing() if self.takes_timing else None, ledger, FULL)
        self.outcomes[trial.number] = outcome
        if outcome.result is None:
            self._failed(trial, case, outcome.error, ledger)
        metrics = dict(outcome.result.metrics)
        trial.set_user_attr(ATTR_METRICS, metrics)
        try:
            constraints, attrs = self.limits.constraints(metrics, case.device)
            values = tuple(_required(metrics, t.metric, f"the {t.name} objective") for t in self.targets)
        except MeasurementError as error:
            self._failed(trial, case, error, ledger)
        for key, text in attrs.items():
            trial.set_user_attr(key, text)
        for key, value in {**constraints, **_validity(trial, outcome.result)}.items():
            trial.set_constraint(key, value)
        trial.set_user_attr(ATTR_OUTCOME, MEASURED)
        trial.set_user_attr(ATTR_FIDELITY, FULL)
        if len(values) == 1 and self.short is not None:
            trial.report(values[0], FULL_STEP)
        return values[0] if len(values) == 1 else values

    def _short_verdict(self, trial: optuna.Trial, case: CaseSpec, result: BenchmarkResult, ledger: _Ledger) -> None:
        """Report the short value; stop the trial (``PRUNED``) when a limit is broken or the pruner says so."""
        metrics = dict(result.metrics)
        trial.set_user_attr(ATTR_SHORT_METRICS, metrics)
        target = self.targets[0]
        try:
            value = _required(metrics, target.metric, f"the {target.name} objective")
            constraints, _ = self.limits.constraints(metrics, case.device)
        except MeasurementError as error:
            self._failed(trial, case, error, ledger)
        maximize = target.direction == "maximize"
        trial.set_user_attr(ATTR_SHORT_BOUND, optimistic_bound(value, metrics, maximize))
        trial.report(value, SHORT_STEP)
        # Accuracy is measured once per prepared model and memory by the process's peak: a short window sees
        # them as a full one would. Latency is noisy at this length, so a p99 limit waits for the full window.
        broken = {key: v for key, v in constraints.items() if v > 0 and key in (MEMORY, ACCURACY_DROP)}
        if broken:
            reason = "breaks " + ", ".join(f"{key} ({v:+.1%})" for key, v in broken.items())
        elif trial.should_prune():
            reason = f"cannot beat the best so far (optimistic {target.name} {trial.user_attrs[ATTR_SHORT_BOUND]:.4g})"
        else:
            return
        for key, limit_value in constraints.items():
            trial.set_constraint(key, limit_value)
        trial.set_user_attr(ATTR_OUTCOME, PRUNED)
        trial.set_user_attr(ATTR_FIDELITY, SHORT)
        trial.set_user_attr(ATTR_PRUNED_BECAUSE, reason)
        raise optuna.TrialPruned(f"{case.name}: {reason} after a short measurement")

    def forget(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """Study callback (after the MLflow adapter's): drop the outcome of a finished trial from memory."""
        self.outcomes.pop(trial.number, None)

    def _failed(self, trial: optuna.Trial, case: CaseSpec, error: BaseException | None, ledger: _Ledger) -> NoReturn:
        error = error or MeasurementError(f"{case.name} produced no result")
        trial.set_user_attr(ATTR_ERROR_TYPE, type(error).__name__)
        trial.set_user_attr(ATTR_ERROR_MESSAGE, str(error)[:2000])
        trial.set_user_attr(ATTR_FIDELITY, NONE if ledger.calls <= 1 else SHORT)
        if ledger.stage:
            trial.set_user_attr(ATTR_ERROR_STAGE, ledger.stage)
        if isinstance(error, OutOfMemoryError):
            trial.set_user_attr(ATTR_OUTCOME, OUT_OF_MEMORY_OUTCOME)
            trial.set_constraint(OUT_OF_MEMORY, 1.0)
            raise optuna.TrialPruned(f"{case.name} ran out of memory (infeasible)")
        trial.set_user_attr(ATTR_OUTCOME, FAILED)
        raise MeasurementError(f"{case.name} failed: {type(error).__name__}: {error}") from error

    def _finished_twin(self, trial: optuna.Trial) -> optuna.trial.FrozenTrial | None:
        """An earlier trial of the study with the same point that finished with a real outcome."""
        states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        mine = self.space.snap(trial.params)
        for other in trial.study.get_trials(deepcopy=False, states=states):
            if other.number == trial.number or other.user_attrs.get(ATTR_OUTCOME) == OVER_BUDGET:
                continue
            if not other.params or self.space.snap(other.params) != mine:
                continue
            if other.state == TrialState.FAIL and ATTR_ERROR_TYPE not in other.user_attrs:
                continue  # a worker died or the trial was interrupted: not an outcome of the point itself
            return other
        return None

    def _reuse(self, trial: optuna.Trial, previous: optuna.trial.FrozenTrial) -> float | tuple[float, ...]:
        origin = previous.user_attrs.get(ATTR_DUPLICATE_OF, previous.number)
        trial.set_user_attr(ATTR_DUPLICATE_OF, origin)
        trial.set_user_attr(ATTR_OUTCOME, REUSED)
        logger.info("trial %d repeats trial %d (%s): reusing its outcome", trial.number, origin, trial.params)
        for key in (
            ATTR_METRICS,
            ATTR_SHORT_METRICS,
            ATTR_MEMORY_METRIC,
            ATTR_ERROR_TYPE,
            ATTR_ERROR_MESSAGE,
            ATTR_VALID,
            ATTR_INVALID_REASONS,
            ATTR_FIDELITY,
            ATTR_PRUNED_BECAUSE,
        ):
            if key in previous.user_attrs:
                trial.set_user_attr(key, previous.user_attrs[key])
        for key, value in previous.constraints.items():
            trial.set_constraint(key, value)
        if previous.state == TrialState.PRUNED:
            raise optuna.TrialPruned(f"repeats trial {origin}, which was pruned or ran out of memory")
        if previous.state == TrialState.FAIL:
            raise MeasurementError(f"repeats trial {origin}, which failed: {previous.user_attrs[ATTR_ERROR_MESSAGE]}")
        values: Any = previous.values
        return values[0] if len(values) == 1 else tuple(values)


class _Ledger:
    """Adds up the costs of a trial's measurement calls and stores them on the trial."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.calls = 0
        self.prepare_s = 0.0
        self.build_s = 0.0
        self.measure_s = {SHORT: 0.0, FULL: 0.0}
        self.reached: list[str] = []
        self.prepared: bool | None = None
        self.stage = ""
        self.built: list[str] = []

    def add(self, fidelity: str, elapsed: float, costs: c.TrialCosts | None) -> None:
        self.calls += 1
        self.reached.append(fidelity)
        if costs is None:
            self.measure_s[fidelity] += elapsed
            return
        self.prepare_s += costs.prepare_s
        self.build_s += costs.variant_build_s
        self.measure_s[fidelity] += costs.measure_s
        self.prepared = costs.prepared if self.prepared is None else self.prepared or costs.prepared
        self.stage = costs.stage or self.stage
        self.built.extend(costs.built)

    def store(self, trial: optuna.Trial, end: float) -> None:
        if not self.calls:
            return
        trial.set_user_attr(c.ATTR_TRIAL_S, end - self.start)
        trial.set_user_attr(c.ATTR_PREPARE_S, self.prepare_s)
        trial.set_user_attr(c.ATTR_BUILD_S, self.build_s)
        if self.built:
            trial.set_user_attr(c.ATTR_BUILT, self.built)
        trial.set_user_attr(c.ATTR_MEASURE_S, sum(self.measure_s.values()))
        if SHORT in self.reached:
            trial.set_user_attr(c.ATTR_SHORT_MEASURE_S, self.measure_s[SHORT])
        if FULL in self.reached:
            trial.set_user_attr(c.ATTR_FULL_MEASURE_S, self.measure_s[FULL])
        if self.prepared is not None:
            trial.set_user_attr(c.ATTR_PREPARATION, c.PREPARED_NEW if self.prepared else c.PREPARED_CACHED)


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
