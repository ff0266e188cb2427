"""The parent run's live view of a pipeline: one summary row per case, and the best case so far.

Rows are plain dicts keyed by the DESIGN.md metric names (``latency/p50_ms`` ...) plus the case fields; they
feed ``mlflow.log_table`` (``summary.json``, one row appended as each case ends) and ``summary.csv``. The
figures and reports are built from the child runs by :mod:`mlperf_track.report`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mlperf_track import metrics as m

if TYPE_CHECKING:
    import pandas as pd

    from mlperf_track.engine.result import BenchmarkResult
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
    m.MODEL_SIZE,
)
#: The metric that ranks cases: the best case has the highest throughput.
RANKING_METRIC = m.THROUGHPUT
#: Prefix of the best case's metrics on the parent run (``best/throughput/samples_per_s``).
BEST_PREFIX = "best/"


def configuration_label(variant: str, runtime: str, precision: str) -> str:
    """A row's configuration: ``variant/runtime/precision``."""
    return f"{variant}/{runtime}/{precision}"


def summary_row(outcome: CaseOutcome, run_id: str | None = None) -> dict[str, Any]:
    """One row of the summary table for a case that ended (with a result or an error)."""
    case = outcome.case
    row: dict[str, Any] = {
        "case": case.name,
        "variant": case.variant,
        "runtime": case.runtime,
        "precision": case.precision,
        "batch_size": case.batch_size,
        "configuration": configuration_label(case.variant, case.runtime, case.precision),
        "status": "ok" if outcome.result is not None else "failed",
    }
    metrics = outcome.result.metrics if outcome.result is not None else {}
    for key in SUMMARY_METRICS:
        row[key] = metrics.get(key, math.nan)
    row["error"] = "" if outcome.error is None else f"{type(outcome.error).__name__}: {outcome.error}"
    row["run_id"] = run_id or ""
    return row


def best_result(results: Sequence[BenchmarkResult]) -> BenchmarkResult | None:
    """The result with the highest throughput (``None`` when no result has one)."""
    ranked = [result for result in results if RANKING_METRIC in result.metrics]
    return max(ranked, key=lambda result: result.metrics[RANKING_METRIC], default=None)


def best_metrics(result: BenchmarkResult) -> dict[str, float]:
    """``result``'s metrics under :data:`BEST_PREFIX`, for the parent run."""
    return {f"{BEST_PREFIX}{key}": value for key, value in result.metrics.items()}


def summary_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """The rows as a DataFrame with a stable column order."""
    import pandas as pd

    return pd.DataFrame(list(rows))
