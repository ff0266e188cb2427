"""The parent run's view of a pipeline: one summary row per case, the best case, and seaborn figures.

Rows are plain dicts keyed by the DESIGN.md metric names (``latency/p50_ms`` ...) plus the case fields, so
the same table feeds ``mlflow.log_table``, the report and the figures.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mlperf_track import metrics as m

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

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
#: Figures on the parent run: artifact file -> (metric, axis label).
FIGURES = {
    "figures/latency_vs_batch_size.png": (m.LATENCY_P50, "p50 latency per batch (ms)"),
    "figures/throughput_vs_batch_size.png": (m.THROUGHPUT, "throughput (samples/s)"),
    "figures/memory_vs_batch_size.png": (None, "peak memory (MB)"),
}


def configuration_label(variant: str, runtime: str, precision: str) -> str:
    """The hue of the figures: one line per ``variant/runtime/precision``."""
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


def memory_metric(rows: Sequence[dict[str, Any]]) -> str | None:
    """The memory metric to plot: GPU allocator peak when measured, else process RSS peak, else none."""
    for key in (m.GPU_PEAK_ALLOCATED, m.CPU_RSS_PEAK):
        if any(not _missing(row.get(key)) for row in rows):
            return key
    return None


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def metric_figure(rows: Sequence[dict[str, Any]], metric: str, ylabel: str) -> Figure | None:
    """A seaborn line plot of ``metric`` against batch size, one line per configuration.

    Returns:
        The figure, or ``None`` when no successful case has the metric.
    """
    import seaborn as sns
    from matplotlib.figure import Figure

    points = [row for row in rows if row.get("status") == "ok" and not _missing(row.get(metric))]
    if not points:
        return None
    frame = summary_frame(points)
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.add_subplot()
    sns.lineplot(data=frame, x="batch_size", y=metric, hue="configuration", marker="o", ax=axes)
    if frame["batch_size"].nunique() > 1:
        axes.set_xscale("log", base=2)
    axes.set_xticks(sorted(frame["batch_size"].unique()))
    axes.set_xticklabels([str(size) for size in sorted(frame["batch_size"].unique())])
    axes.set_xlabel("batch size")
    axes.set_ylabel(ylabel)
    axes.set_title(f"{metric} by batch size")
    axes.grid(True, alpha=0.3)
    return figure


def summary_figures(rows: Sequence[dict[str, Any]]) -> tuple[dict[str, Figure], dict[str, str]]:
    """Every figure that has data, by artifact file, and a note for each that does not."""
    figures: dict[str, Figure] = {}
    notes: dict[str, str] = {}
    for artifact_file, (metric, ylabel) in FIGURES.items():
        key = metric or memory_metric(rows)
        figure = metric_figure(rows, key, ylabel) if key else None
        if figure is None:
            notes[artifact_file] = f"no successful case measured {key or 'a memory peak'}"
        else:
            figures[artifact_file] = figure
    return figures, notes


def figure_png(figure: Figure) -> bytes:
    """The figure rendered as PNG bytes (for embedding in the HTML report)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
