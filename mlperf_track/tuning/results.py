"""What a study found: the best eligible configuration (or the Pareto front), counts, and a trials table.

"Best" is the eligibility rule of :mod:`mlperf_track.engine.eligibility`, the one the pipeline's parent run,
the report and the console apply: a trial must have completed (been measured in full: a trial pruned after
its short measurement is never a candidate), be a valid measurement (trial user attribute ``valid``), and
respect the study's accuracy, memory and latency limits (an accuracy delta whose CI contains 0 is "no
measurable change"). Optuna's constraints steer the sampler; this rule picks the answer.

Plain objects and a pandas table, no MLflow: the CLI renders them, the MLflow adapter logs them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from optuna.trial import FrozenTrial, TrialState

from mlperf_track import metrics as m
from mlperf_track.engine.eligibility import FAILED, FINISHED, RUNNING, Candidate, Limits, judge
from mlperf_track.engine.ranking import Ranking, rank
from mlperf_track.engine.ranking import pareto_front as eligible_front
from mlperf_track.pipeline.candidates import configuration_label
from mlperf_track.report.candidates import OUT_OF_MEMORY_ERROR, parse_valid
from mlperf_track.tuning import costs as c
from mlperf_track.tuning import objective as o
from mlperf_track.tuning.objective import (
    ACCURACY_DROP,
    ATTR_DUPLICATE_OF,
    ATTR_ERROR_MESSAGE,
    ATTR_ERROR_TYPE,
    ATTR_MEMORY_METRIC,
    ATTR_METRICS,
    MEMORY,
    OUT_OF_MEMORY,
    P99,
    Target,
    is_feasible,
)

if TYPE_CHECKING:
    import optuna
    import pandas as pd

    from mlperf_track.report.recommend import Recommendation
    from mlperf_track.tuning.config import TuneConfig
    from mlperf_track.tuning.objective import Limits as TrialLimits

#: Metric columns of the trials table: (column, metric key).
METRIC_COLUMNS = (
    ("throughput", m.THROUGHPUT),
    ("p50_ms", m.LATENCY_P50),
    ("p99_ms", m.LATENCY_P99),
    ("cpu_rss_peak_mb", m.CPU_RSS_PEAK),
    ("gpu_peak_allocated_mb", m.GPU_PEAK_ALLOCATED),
    ("gpu_process_peak_mb", m.GPU_PROCESS_PEAK),
    ("top1", m.ACCURACY_TOP1),
    ("top1_delta", m.ACCURACY_TOP1_DELTA),
)
#: The readable settings columns (trial user attributes written by the objective).
SETTING_COLUMNS = ("variant", "runtime", "precision", "batch_size", "num_threads")
#: How each trial went and what it cost (trial user attributes): outcome, fidelity, seconds, preparation.
COST_COLUMNS = (
    o.ATTR_OUTCOME,
    o.ATTR_FIDELITY,
    c.ATTR_PREPARATION,
    c.ATTR_PREPARE_S,
    c.ATTR_BUILD_S,
    c.ATTR_BUILT,
    c.ATTR_MEASURE_S,
    c.ATTR_TRIAL_S,
    o.ATTR_PRUNED_BECAUSE,
    o.ATTR_REUSED_FROM,
)
#: Trial user attributes of the validity verdict (``True``/``False`` or ``"true"``/``"false"``; reasons as a
#: list or a ``; ``-separated string). A trial without them counts as valid.
ATTR_VALID = "valid"
ATTR_INVALID_REASONS = "invalid_reasons"
_STATES = {TrialState.COMPLETE: FINISHED, TrialState.PRUNED: FAILED, TrialState.FAIL: FAILED}
#: Constraints the eligibility rule checks itself once it has the limits (validity, out of memory, limits).
#: ("invalid_measurement" is the tuner's validity constraint; the rule reads the ``valid`` attribute.)
_RULE_CONSTRAINTS = frozenset({MEMORY, P99, ACCURACY_DROP, OUT_OF_MEMORY, "invalid_measurement"})


@dataclass
class StudySummary:
    """The answer of a study.

    Attributes:
        study_name: The study.
        targets: What was optimised.
        best: The best feasible trial (one objective) or the feasible Pareto front (several); empty when no
            trial was feasible.
        counts: Trials by state name (``COMPLETE``, ``PRUNED``, ``FAIL``, ...).
        n_feasible: Completed trials that satisfy every constraint.
        n_infeasible: Trials that broke a limit (measured in full, or already in the short measurement) or ran
            out of memory.
        n_measured: Points measured in full by this study (reused and pruned trials are not counted).
        n_pruned: Trials this study stopped after their short measurement (or before measuring, by the time
            budget).
        n_reused: Trials that took their outcome from an earlier run (warm start) or trial.
        limits: The limits the answer respects.
        ranking: Every fully measured point judged by the eligibility rule (duplicates left out).
    """

    study_name: str
    targets: tuple[Target, ...]
    best: list[FrozenTrial] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    n_feasible: int = 0
    n_infeasible: int = 0
    n_measured: int = 0
    n_pruned: int = 0
    n_reused: int = 0
    limits: Limits = field(default_factory=Limits)
    ranking: Ranking | None = None

    def recommendation(self, heading: str = "") -> Recommendation:
        """The answer in words (the same text ``run`` and ``report`` print), over the measured points."""
        from mlperf_track.report.recommend import recommend

        target = self.targets[0]
        candidates = [candidate for candidate, _ in self.ranking.judged] if self.ranking else []
        answer = recommend(
            candidates, self.limits, metric=target.metric, maximize=target.direction == "maximize", heading=heading
        )
        if self.multi_objective and self.best:
            numbers = ", ".join(str(trial.number) for trial in self.best)
            extra = f"Pareto front of {', '.join(t.name for t in self.targets)}: trials {numbers}."
            return type(answer)(answer.ranking, (*answer.lines, extra))
        return answer

    @property
    def found(self) -> bool:
        """Whether some configuration satisfied every constraint."""
        return bool(self.best)

    @property
    def multi_objective(self) -> bool:
        """Whether the answer is a Pareto front."""
        return len(self.targets) > 1

    @property
    def n_trials(self) -> int:
        """Every trial of the study, in any state."""
        return sum(self.counts.values())


def _original_first(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """Drop trials that only repeat an earlier trial's outcome (keep the one that measured it)."""
    return [trial for trial in trials if ATTR_DUPLICATE_OF not in trial.user_attrs]


def _stopped_early(trial: FrozenTrial) -> bool:
    """A trial pruned after its short measurement (here or, reused, in an earlier study), or not measured for the
    time budget: not a candidate."""
    if trial.state != TrialState.PRUNED:
        return False
    outcome = trial.user_attrs.get(o.ATTR_OUTCOME)
    return outcome in (o.PRUNED, o.OVER_BUDGET) or (
        outcome == o.REUSED and trial.user_attrs.get(o.ATTR_FIDELITY) == o.SHORT
    )


def study_limits(config: TuneConfig, limits: TrialLimits | None = None) -> Limits:
    """The limits of a study as the eligibility rule reads them (accuracy, memory, p99 latency).

    ``limits``: the study's constraints as applied (the accuracy limit is off where accuracy is not measured).
    """
    drop = config.pipeline.max_accuracy_drop if limits is None else limits.max_accuracy_drop
    return Limits(
        max_accuracy_drop=drop,
        memory_limit_mb=config.search.memory_limit_mb,
        p99_limit_ms=config.search.p99_slo_ms,
    )


def _reasons(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(part for part in value.split("; ") if part)
    if isinstance(value, (list, tuple)):
        return tuple(str(part) for part in value)
    return ()


def _broken_constraints(trial: FrozenTrial, limits: Limits | None) -> tuple[str, ...]:
    """Violated Optuna constraints the rule does not judge itself: all of them without limits (a caller that
    only has the study), else those of no limit the rule knows (its own checks win: an accuracy delta whose CI
    contains 0 passes even where the point-estimate constraint is violated)."""
    judged = set() if limits is None else _RULE_CONSTRAINTS
    return tuple(
        f"constraint {name} violated ({value:+.1%})"
        for name, value in sorted(trial.constraints.items())
        if value > 0 and name not in judged
    )


def trial_candidate(trial: FrozenTrial, device: str = "cpu", limits: Limits | None = None) -> Candidate:
    """A trial as the eligibility rule sees it (its case's settings, metrics, state, validity, constraints).

    ``limits``: the study's limits; ``None`` counts every violated Optuna constraint as a reason instead.
    """
    attrs = trial.user_attrs
    valid = attrs.get(ATTR_VALID)
    error_type = attrs.get(ATTR_ERROR_TYPE)
    extras = (f"threads={attrs['num_threads']}",) if attrs.get("num_threads") else ()
    variant, runtime, precision = (str(attrs.get(key, "?")) for key in ("variant", "runtime", "precision"))
    config = str(trial.params.get("config") or configuration_label(variant, runtime, precision))
    batch = attrs.get("batch_size")
    return Candidate(
        name=f"trial-{trial.number}",
        config="/".join((config, *extras)),
        variant=variant,
        runtime=runtime,
        precision=precision,
        batch_size=int(batch) if batch is not None else None,
        device=device,
        status=_STATES.get(trial.state, RUNNING),
        metrics=dict(attrs.get(ATTR_METRICS, {}) or {}),
        valid=valid if isinstance(valid, bool) or valid is None else parse_valid(str(valid)),
        invalid_reasons=_reasons(attrs.get(ATTR_INVALID_REASONS)),
        error=f"{error_type}: {attrs.get(ATTR_ERROR_MESSAGE, '')}" if error_type else "",
        out_of_memory=OUT_OF_MEMORY in trial.constraints or error_type == OUT_OF_MEMORY_ERROR,
        question=(),
        broken=_broken_constraints(trial, limits) if trial.state == TrialState.COMPLETE else (),
    )


def _device_of(trials: list[FrozenTrial], device: str | None) -> str:
    if device is not None:
        return device
    metric = next((str(t.user_attrs[ATTR_MEMORY_METRIC]) for t in trials if ATTR_MEMORY_METRIC in t.user_attrs), "")
    return "cuda" if metric.startswith("memory/gpu") else "cpu"


def summarize(
    study: optuna.Study, targets: tuple[Target, ...], *, limits: Limits | None = None, device: str | None = None
) -> StudySummary:
    """The best eligible configuration (or eligible Pareto front) and the counts of ``study``.

    Args:
        study: The study.
        targets: What was optimised.
        limits: The study's limits; ``None`` reads them from the trials' Optuna constraints instead.
        device: ``cpu`` or ``cuda`` (which memory metric a limit reads); ``None``: guessed from the trials.
    """
    given, limits = limits, limits or Limits()
    trials = study.get_trials(deepcopy=False)
    device = _device_of(trials, device)
    counts: dict[str, int] = {}
    for trial in trials:
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    metric, maximize = targets[0].metric, targets[0].direction == "maximize"
    verdicts = {trial.number: judge(trial_candidate(trial, device, given), limits, metric) for trial in trials}
    finished = [
        trial
        for trial in trials
        if trial.state in (TrialState.COMPLETE, TrialState.PRUNED) and not _stopped_early(trial)
    ]
    measured = _original_first(finished)
    by_candidate = {trial.number: trial_candidate(trial, device, given) for trial in measured}
    ranking = rank(list(by_candidate.values()), limits, metric=metric, maximize=maximize)
    summary = StudySummary(
        study_name=study.study_name,
        targets=targets,
        counts=counts,
        n_feasible=sum(1 for trial in finished if verdicts[trial.number].eligible),
        n_infeasible=sum(1 for trial in finished if not verdicts[trial.number].eligible)
        + sum(1 for trial in trials if _stopped_early(trial) and any(v > 0 for v in trial.constraints.values())),
        n_measured=sum(1 for trial in measured if trial.user_attrs.get(o.ATTR_OUTCOME) != o.REUSED),
        n_pruned=sum(
            1 for trial in trials if _stopped_early(trial) and trial.user_attrs.get(o.ATTR_OUTCOME) != o.REUSED
        ),
        n_reused=sum(1 for trial in trials if trial.user_attrs.get(o.ATTR_OUTCOME) == o.REUSED),
        limits=limits,
        ranking=ranking,
    )
    trial_of = {id(candidate): number for number, candidate in by_candidate.items()}
    numbers = {trial.number: trial for trial in measured}
    if len(targets) == 1:
        summary.best = [numbers[trial_of[id(ranking.best)]]] if ranking.best is not None else []
    else:
        objectives = [(_reader(t.metric), t.direction == "maximize") for t in targets]
        front = eligible_front(ranking.eligible, objectives)
        summary.best = sorted((numbers[trial_of[id(c)]] for c in front), key=lambda trial: trial.number)
    return summary


def _reader(metric: str) -> Callable[[Candidate], float | None]:
    return lambda candidate: candidate.metric(metric)


def trial_row(trial: FrozenTrial, targets: tuple[Target, ...], limits: Limits | None = None) -> dict[str, Any]:
    """One row of the trials table (``eligible``/``why_not``: the eligibility rule under ``limits``)."""
    attrs = trial.user_attrs
    metrics: dict[str, float] = attrs.get(ATTR_METRICS, {}) or {}
    row: dict[str, Any] = {
        "number": trial.number,
        "state": trial.state.name,
        "feasible": is_feasible(trial),
        "config": trial.params.get("config"),
    }
    row.update({column: attrs.get(column) for column in SETTING_COLUMNS})
    # Optuna keeps a pruned trial's last intermediate value as its value: that is the short measurement, shown
    # as ``short_throughput``, never as the trial's value.
    values = trial.values if trial.values is not None and not _stopped_early(trial) else [None] * len(targets)
    for target, value in zip(targets, values, strict=True):
        row[f"value.{target.name}"] = value
    row.update({column: metrics.get(key) for column, key in METRIC_COLUMNS})
    row.update({f"constraint.{key}": value for key, value in sorted(trial.constraints.items())})
    row.update({column: attrs.get(column) for column in COST_COLUMNS})
    short = attrs.get(o.ATTR_SHORT_METRICS) or {}
    row["short_throughput"] = short.get(m.THROUGHPUT)
    row["duplicate_of"] = attrs.get(ATTR_DUPLICATE_OF)
    row["retry_of"] = trial.system_attrs.get("failed_trial")
    error = attrs.get(ATTR_ERROR_TYPE)
    row["error"] = f"{error}: {attrs.get(ATTR_ERROR_MESSAGE, '')}" if error else None
    row["duration_s"] = trial.duration.total_seconds() if trial.duration is not None else None
    if _stopped_early(trial):
        row["eligible"] = False
        row["why_not"] = f"not measured in full: {attrs.get(o.ATTR_PRUNED_BECAUSE) or attrs.get(o.ATTR_OUTCOME)}"
        return row
    verdict = judge(trial_candidate(trial, _device_of([trial], None), limits), limits or Limits(), targets[0].metric)
    row["eligible"] = verdict.eligible
    row["why_not"] = verdict.text or None
    return row


def trials_frame(study: optuna.Study, targets: tuple[Target, ...], limits: Limits | None = None) -> pd.DataFrame:
    """Every trial of ``study`` as a table (one row per trial, ordered by number)."""
    import pandas as pd

    rows = [trial_row(trial, targets, limits) for trial in study.get_trials(deepcopy=False)]
    frame = pd.DataFrame(rows)
    return frame.sort_values("number").reset_index(drop=True) if not frame.empty else frame
