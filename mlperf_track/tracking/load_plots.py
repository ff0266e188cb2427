"""The parent run's figures of a load sweep (MLflow draws none of them): latency against offered load, the
latency CDF of every point, and each point's latency split into queueing and compute.

Plain matplotlib :class:`~matplotlib.figure.Figure` objects (no pyplot state), ready for ``mlflow.log_figure``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mlperf_track import metrics as m

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from mlperf_track.engine.load.result import LoadResult

#: At most this many curves in the CDF (the points spread over the sweep).
MAX_CDF_CURVES = 10


def _label(result: LoadResult, loaded: bool) -> str:
    return f"{result.label}{' +load' if loaded else ''}"


def _latencies(result: LoadResult) -> np.ndarray:
    ok = [(end - arrival) for arrival, end, status in zip(
        result.column("arrival_ms"), result.column("end_ms"), result.column("status"), strict=True
    ) if status == "ok"]  # fmt: skip
    return np.sort(np.asarray(ok, dtype=np.float64))


def latency_vs_load(points: list[tuple[LoadResult, bool]], bound_ms: float | None) -> Figure:
    """p50 and p99 latency against the offered rate; VALID points filled, INVALID hollow; the bound dashed."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.add_subplot()
    for loaded, style in ((False, "-"), (True, ":")):
        chosen = sorted(
            (r for r, is_loaded in points if is_loaded == loaded and r.metrics.get(m.LOAD_OFFERED_QPS) is not None),
            key=lambda r: r.metrics[m.LOAD_OFFERED_QPS],
        )
        if not chosen:
            continue
        rates = [r.metrics[m.LOAD_OFFERED_QPS] for r in chosen]
        suffix = " (background load)" if loaded else ""
        for key, name, color in ((m.LOAD_LATENCY_P50, "p50", "tab:blue"), (m.LOAD_LATENCY_P99, "p99", "tab:red")):
            values = [r.metrics.get(key, np.nan) for r in chosen]
            axes.plot(rates, values, style, color=color, label=f"{name}{suffix}")
            for rate, value, result in zip(rates, values, chosen, strict=True):
                face = color if result.valid else "none"
                axes.scatter([rate], [value], color=color, facecolors=face, zorder=3)
    if bound_ms is not None:
        axes.axhline(bound_ms, color="black", linestyle="--", linewidth=1, label=f"bound {bound_ms:g} ms")
    axes.set_xlabel("offered load (queries/s)")
    axes.set_ylabel("latency (ms)")
    axes.set_title("Latency against offered load (filled: VALID, hollow: INVALID)")
    axes.legend(loc="upper left", fontsize="small")
    return figure


def latency_cdf(points: list[tuple[LoadResult, bool]]) -> Figure:
    """The empirical CDF of every point's query latencies (log-scaled latency axis)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.add_subplot()
    step = max(1, -(-len(points) // MAX_CDF_CURVES))
    for result, loaded in points[::step]:
        latencies = _latencies(result)
        if latencies.size:
            fraction = np.arange(1, latencies.size + 1) / latencies.size
            axes.step(latencies, fraction, where="post", label=_label(result, loaded))
    axes.set_xscale("log")
    axes.set_xlabel("latency (ms, log scale)")
    axes.set_ylabel("fraction of queries")
    axes.axhline(0.99, color="grey", linewidth=0.8, linestyle=":")
    axes.set_title("Latency CDF per load point")
    axes.legend(loc="lower right", fontsize="small")
    return figure


def queue_compute_split(points: list[tuple[LoadResult, bool]]) -> Figure:
    """Per point, mean latency as stacked queueing + compute, with the p99's split beside it."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(max(6.0, 0.9 * len(points) + 2), 4.5), layout="constrained")
    axes = figure.add_subplot()
    labels = [_label(result, loaded) for result, loaded in points]
    positions = np.arange(len(points))
    width = 0.38
    for offset, (queue_key, compute_key, name) in (
        (-width / 2, (m.LOAD_QUEUE_MEAN, m.LOAD_COMPUTE_MEAN, "mean")),
        (width / 2, (m.LOAD_QUEUE_P99, m.LOAD_COMPUTE_P99, "p99")),
    ):
        queue = [result.metrics.get(queue_key, np.nan) for result, _ in points]
        compute = [result.metrics.get(compute_key, np.nan) for result, _ in points]
        hatch = "" if name == "mean" else "//"
        axes.bar(positions + offset, compute, width, color="tab:green", hatch=hatch, label=f"compute ({name})")
        axes.bar(positions + offset, queue, width, bottom=compute, color="tab:orange", hatch=hatch,
                 label=f"queueing ({name})")  # fmt: skip
    axes.set_xticks(positions, labels, rotation=30, ha="right", fontsize="small")
    axes.set_ylabel("latency (ms)")
    axes.set_title("Queueing vs compute (left bar: mean, right bar: p99 of each part)")
    axes.legend(fontsize="small")
    return figure
