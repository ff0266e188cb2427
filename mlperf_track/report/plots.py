"""Seaborn figures of a report: batch scaling, the accuracy trade-off with its Pareto front, and hardware.

Figures are built on :class:`matplotlib.figure.Figure` objects (no pyplot, no global backend), so they can be
drawn from any thread and never open a window. Each builder returns ``None`` when the runs hold nothing to
draw, and the caller says why in the report.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from mlperf_track import metrics as m

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Batch-scaling figures: file stem -> (column, axis label).
BATCH_FIGURES = {
    "latency_vs_batch_size": (m.LATENCY_P50, "p50 latency per batch (ms)"),
    "throughput_vs_batch_size": (m.THROUGHPUT, "throughput (samples/s)"),
    "memory_vs_batch_size": ("memory_mb", "peak memory (MB)"),
}
_STYLE = {"axes.grid": True, "grid.alpha": 0.35}


def figure_png(figure: Figure, dpi: int = 110) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def _figure(columns: int, width: float = 6.0, height: float = 4.0) -> tuple[Figure, list[Axes]]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width * columns + 2.5, height), layout="constrained")
    axes = figure.subplots(1, columns, squeeze=False)[0]
    return figure, list(axes)


def _palette(cases: pd.DataFrame) -> dict[str, Any]:
    """One stable colour per configuration, shared by every figure."""
    import seaborn as sns

    configs = sorted(cases["config"].unique())
    colors = sns.color_palette("tab10" if len(configs) <= 10 else "husl", len(configs))
    return dict(zip(configs, colors, strict=True))


def _legend_outside(axes: list[Axes]) -> None:
    """Keep one legend, to the right of the last panel."""
    for ax in axes[:-1]:
        legend = ax.get_legend()
        if legend is not None:
            legend.remove()
    if axes[-1].get_legend() is not None:
        axes[-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, title=None, frameon=False)


def batch_scaling_figure(cases: pd.DataFrame, column: str, label: str) -> Figure | None:
    """``column`` against batch size, one line per configuration, one panel per hardware."""
    import seaborn as sns

    data = cases[cases[column].notna() & cases["batch_size"].notna()] if column in cases else cases.iloc[:0]
    if data.empty:
        return None
    data = data.assign(batch_size=data["batch_size"].astype(float))
    palette = _palette(cases)
    hardware = sorted(data["hardware"].unique())
    with sns.axes_style("whitegrid", _STYLE):
        figure, axes = _figure(len(hardware))
        for ax, name in zip(axes, hardware, strict=True):
            subset = data[data["hardware"] == name]
            sns.lineplot(
                data=subset,
                x="batch_size",
                y=column,
                hue="config",
                style="config",
                markers=True,
                dashes=False,
                palette=palette,
                errorbar=("pi", 100),
                ax=ax,
            )
            ax.set_xscale("log", base=2)
            ticks = sorted(subset["batch_size"].unique())
            ax.set_xticks(ticks, [f"{tick:g}" for tick in ticks])
            ax.set_xlabel("batch size")
            ax.set_ylabel(label)
            ax.set_ylim(bottom=0)
            ax.set_title(name if len(hardware) > 1 else "", fontsize=10)
        _legend_outside(axes)
    return figure


def _draw_front(ax: Axes, front: pd.DataFrame, x: str, maximize_x: bool) -> None:
    """The Pareto front as a step line through its points."""
    ordered = front.sort_values(x, ascending=not maximize_x)
    ax.step(
        ordered[x],
        ordered[m.ACCURACY_TOP1],
        where="post",
        color="black",
        linewidth=1.2,
        alpha=0.7,
        label="Pareto front",
    )
    ax.scatter(ordered[x], ordered[m.ACCURACY_TOP1], s=140, facecolors="none", edgecolors="black", linewidths=1.2)


def accuracy_tradeoff_figure(cases: pd.DataFrame) -> Figure | None:
    """Top-1 against p50 latency (smallest batch size) and against throughput (all), with Pareto fronts.

    Needs :func:`mlperf_track.report.tables.add_pareto_columns` to have run.
    """
    import seaborn as sns

    if m.ACCURACY_TOP1 not in cases or cases[m.ACCURACY_TOP1].isna().all():
        return None
    data = cases[cases[m.ACCURACY_TOP1].notna()]
    smallest = data["batch_size"].min()
    at_smallest = data[data["batch_size"] == smallest]
    palette = _palette(cases)
    with sns.axes_style("whitegrid", _STYLE):
        figure, (left, right) = _figure(2)
        sns.scatterplot(
            data=at_smallest, x=m.LATENCY_P50, y=m.ACCURACY_TOP1, hue="config", palette=palette, s=60, ax=left
        )
        _draw_front(left, at_smallest[at_smallest["pareto_latency"]], m.LATENCY_P50, maximize_x=False)
        left.set_xlabel(f"p50 latency per batch (ms), batch size {smallest}")
        left.set_ylabel("top-1 accuracy")
        left.set_title("upper left is better; circled: Pareto front", fontsize=9)
        if m.THROUGHPUT in data:
            sns.scatterplot(
                data=data.assign(batch=data["batch_size"].astype(str)),
                x=m.THROUGHPUT,
                y=m.ACCURACY_TOP1,
                hue="config",
                style="batch",
                palette=palette,
                s=60,
                ax=right,
            )
            _draw_front(right, data[data["pareto"]], m.THROUGHPUT, maximize_x=True)
            right.set_xlabel("throughput (samples/s), every batch size")
            right.set_ylabel("top-1 accuracy")
            right.set_title("upper right is better; circled: Pareto front", fontsize=9)
        _legend_outside([left, right])
    return figure


def hardware_figure(cases: pd.DataFrame) -> Figure | None:
    """Peak throughput per configuration on each machine; ``None`` when all runs come from one machine."""
    import seaborn as sns

    if m.THROUGHPUT not in cases or cases["hardware"].nunique() < 2:
        return None
    peak = cases.groupby(["config", "hardware"], as_index=False)[m.THROUGHPUT].max()
    height = 1.2 + 0.35 * len(peak)
    with sns.axes_style("whitegrid", _STYLE):
        figure, (ax,) = _figure(1, width=7.0, height=height)
        sns.barplot(data=peak, x=m.THROUGHPUT, y="config", hue="hardware", orient="h", ax=ax)
        ax.set_xlabel("peak throughput over batch sizes (samples/s)")
        ax.set_ylabel("")
        _legend_outside([ax])
    return figure
