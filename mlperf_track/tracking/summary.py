"""The parent run's live view of a pipeline: one summary row per case, and the best case so far.

Rows are plain dicts keyed by the DESIGN.md metric names (``latency/p50_ms`` ...) plus the case fields; they
feed ``mlflow.log_table`` (``summary.json``, one row appended as each case ends) and ``summary.csv``. The
figures and reports are built from the child runs by :mod:`mlperf_track.report`.

"Best" is the eligibility rule of :mod:`mlperf_track.engine.eligibility` (finished, valid, within the
accuracy limit, highest throughput), the same rule the report, the console and the tuner apply.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mlperf_track import metrics as m
from mlperf_track.engine.eligibility import Limits, judge
from mlperf_track.engine.ranking import rank
from mlperf_track.pipeline.candidates import case_label, from_outcome

if TYPE_CHECKING:
    import pandas as pd

    from mlperf_track.engine.result import BenchmarkResult
    from mlperf_track.pipeline.config import PipelineConfig
    from mlperf_track.pipeline.events import CaseOutcome

#: Metric columns of the summary table, in display order.
SUMMARY_METRICS = (
    m.LATENCY_P50,
    m.LATENCY_P99,
    m.THROUGHPUT,
    m.CPU_RSS_PEAK,
    m.GPU_PEAK_ALLOCATED,
    m.ACCURACY_TOP1,
    m.ACCURACY_TOP1_DELTA,
    m.ACCURACY_TOP1_DELTA_CI_LOW,
    m.ACCURACY_TOP1_DELTA_CI_HIGH,
    m.MODEL_SIZE,
)
#: The metric that ranks cases: the best eligible case has the highest throughput.
RANKING_METRIC = m.THROUGHPUT
#: Prefix of the best case's metrics on the parent run (``best/throughput/samples_per_s``).
BEST_PREFIX = "best/"
#: Parent tag: ``found`` when a case qualifies as best, ``none_eligible`` when none does.
BEST_STATUS_TAG = "best.status"
BEST_FOUND = "found"
BEST_NONE = "none_eligible"


def configuration_label(variant: str, runtime: str, precision: str) -> str:
    """A row's configuration: ``variant/runtime/precision``."""
    return f"{variant}/{runtime}/{precision}"


def pipeline_limits(config: PipelineConfig | None) -> Limits:
    """The limits a pipeline's best respects (its accuracy limit; the PipelineConfig default without one)."""
    if config is None:
        from mlperf_track.pipeline.config import PipelineConfig

        return Limits(max_accuracy_drop=PipelineConfig.max_accuracy_drop)
    return Limits(max_accuracy_drop=config.max_accuracy_drop)


def summary_row(outcome: CaseOutcome, run_id: str | None = None, limits: Limits | None = None) -> dict[str, Any]:
    """One row of the summary table for a case that ended (with a result or an error).

    ``eligible``/``why_not`` apply the eligibility rule under ``limits`` (no limits when ``None``).
    """
    case = outcome.case
    row: dict[str, Any] = {
        "case": case.name,
        "variant": case.variant,
        "runtime": case.runtime,
        "precision": case.precision,
        "batch_size": case.batch_size,
        "configuration": case_label(case),
        "status": "ok" if outcome.result is not None else "failed",
    }
    metrics = outcome.result.metrics if outcome.result is not None else {}
    for key in SUMMARY_METRICS:
        row[key] = metrics.get(key, math.nan)
    verdict = judge(from_outcome(outcome, run_id or ""), limits or Limits())
    row["valid"] = "" if outcome.result is None else str(outcome.result.valid).lower()
    row["eligible"] = verdict.eligible
    row["why_not"] = verdict.text
    row["error"] = "" if outcome.error is None else f"{type(outcome.error).__name__}: {outcome.error}"
    row["run_id"] = run_id or ""
    return row


def best_result(results: Sequence[BenchmarkResult], limits: Limits | None = None) -> BenchmarkResult | None:
    """The eligible result with the highest throughput under ``limits`` (``None`` when none qualifies)."""
    from mlperf_track.pipeline.events import CaseOutcome

    pairs = [(from_outcome(CaseOutcome(case=result.case, result=result)), result) for result in results]
    best = rank([candidate for candidate, _ in pairs], limits or Limits()).best
    return next((result for candidate, result in pairs if candidate is best), None)


def best_metrics(result: BenchmarkResult) -> dict[str, float]:
    """``result``'s metrics under :data:`BEST_PREFIX`, for the parent run."""
    return {f"{BEST_PREFIX}{key}": value for key, value in result.metrics.items()}


def summary_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """The rows as a DataFrame with a stable column order."""
    import pandas as pd

    return pd.DataFrame(list(rows))
