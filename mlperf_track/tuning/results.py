"""What a study found: the best feasible configuration (or the Pareto front), counts, and a trials table.

Plain objects and a pandas table, no MLflow: the CLI renders them, the MLflow adapter logs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from mlperf_track import metrics as m
from mlperf_track.tuning.objective import (
    ATTR_DUPLICATE_OF,
    ATTR_ERROR_MESSAGE,
    ATTR_ERROR_TYPE,
    ATTR_METRICS,
    Target,
    is_feasible,
)

if TYPE_CHECKING:
    import optuna
    import pandas as pd

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
        n_infeasible: Trials that broke a constraint or ran out of memory.
        n_measured: Distinct points actually measured (trials that reused an earlier outcome are not counted).
    """

    study_name: str
    targets: tuple[Target, ...]
    best: list[FrozenTrial] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    n_feasible: int = 0
    n_infeasible: int = 0
    n_measured: int = 0

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


def summarize(study: optuna.Study, targets: tuple[Target, ...]) -> StudySummary:
    """The best feasible configuration (or Pareto front) and the counts of ``study``."""
    trials = study.get_trials(deepcopy=False)
    counts: dict[str, int] = {}
    for trial in trials:
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    feasible = [trial for trial in trials if is_feasible(trial)]
    infeasible = [
        trial for trial in trials if trial.state in (TrialState.COMPLETE, TrialState.PRUNED) and not is_feasible(trial)
    ]
    measured = _original_first([t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)])
    summary = StudySummary(
        study_name=study.study_name,
        targets=targets,
        counts=counts,
        n_feasible=len(feasible),
        n_infeasible=len(infeasible),
        n_measured=len(measured),
    )
    if not feasible:
        return summary
    if len(targets) == 1:
        sign = 1.0 if study.direction == StudyDirection.MAXIMIZE else -1.0
        best = max(feasible, key=lambda trial: (sign * float(trial.values[0]), -trial.number))
        summary.best = [best]
    else:
        front = _original_first(list(study.best_trials)) or list(study.best_trials)
        summary.best = sorted(front, key=lambda trial: trial.number)
    return summary


def trial_row(trial: FrozenTrial, targets: tuple[Target, ...]) -> dict[str, Any]:
    """One row of the trials table."""
    attrs = trial.user_attrs
    metrics: dict[str, float] = attrs.get(ATTR_METRICS, {}) or {}
    row: dict[str, Any] = {
        "number": trial.number,
        "state": trial.state.name,
        "feasible": is_feasible(trial),
        "config": trial.params.get("config"),
    }
    row.update({column: attrs.get(column) for column in SETTING_COLUMNS})
    for target, value in zip(targets, trial.values or [None] * len(targets), strict=True):
        row[f"value.{target.name}"] = value
    row.update({column: metrics.get(key) for column, key in METRIC_COLUMNS})
    row.update({f"constraint.{key}": value for key, value in sorted(trial.constraints.items())})
    row["duplicate_of"] = attrs.get(ATTR_DUPLICATE_OF)
    row["retry_of"] = trial.system_attrs.get("failed_trial")
    error = attrs.get(ATTR_ERROR_TYPE)
    row["error"] = f"{error}: {attrs.get(ATTR_ERROR_MESSAGE, '')}" if error else None
    row["duration_s"] = trial.duration.total_seconds() if trial.duration is not None else None
    return row


def trials_frame(study: optuna.Study, targets: tuple[Target, ...]) -> pd.DataFrame:
    """Every trial of ``study`` as a table (one row per trial, ordered by number)."""
    import pandas as pd

    rows = [trial_row(trial, targets) for trial in study.get_trials(deepcopy=False)]
    frame = pd.DataFrame(rows)
    return frame.sort_values("number").reset_index(drop=True) if not frame.empty else frame
