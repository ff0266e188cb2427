"""Seaborn figures of one question: batch scaling, the accuracy trade-off with its Pareto front, and hardware.

Readable at 40+ configurations: one panel per runtime (and a row per machine), colour by variant from a short
fixed palette, marker by precision (and any other setting that varies), one legend for the whole figure, and
text labels only on the Pareto front and the recommended case instead of a legend entry per configuration.

Figures are built on :class:`matplotlib.figure.Figure` objects (no pyplot, no global backend), so they can be
drawn from any thread and never open a window. Each builder returns ``None`` when the runs hold nothing to
draw, and the caller says why in the report.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
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
#: Above this max/min ratio an axis is drawn on a log scale.
_LOG_RANGE = 30.0
#: Panels per row before a figure wraps.
_WRAP = 3
#: The baseline is drawn dark grey; other variants take the colour-blind palette in name order.
_BASELINE_COLOR = "#3b3b3b"
_MARKERS = ("o", "X", "s", "P", "D", "^", "v", "<", ">", "p", "h", "*")
#: Legend entries a panel may add, in legend order.
_EXTRA_ENTRIES = ("Pareto front", "accuracy limit", "recommended", "invalid measurement")


def figure_png(figure: Figure, dpi: int = 110) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def _grid(
    panels: int, rows_of: int = 1, width: float = 4.6, height: float = 3.6, *, sharey: bool = False
) -> tuple[Figure, list[Axes]]:
    """A figure of ``panels`` axes, ``rows_of`` groups of rows (machines), wrapped at :data:`_WRAP` columns.

    ``sharey``: one y scale per row of panels, so runtimes compare at a glance.
    """
    from matplotlib.figure import Figure

    columns = min(panels, _WRAP) if rows_of == 1 else panels
    rows = rows_of * (-(-panels // columns) if rows_of == 1 else 1)
    figure = Figure(figsize=(width * columns + 2.8, height * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False, sharey="row" if sharey else False).ravel().tolist()
    for ax in axes[panels * rows_of :]:
        ax.set_visible(False)
    return figure, axes


def series_columns(cases: pd.DataFrame) -> pd.DataFrame:
    """``marker``: the configuration without its variant and runtime (the precision, and any extra setting)."""
    parts = cases["config"].astype(str).str.split("/")
    return cases.assign(marker=["/".join(items[2:]) or "-" for items in parts])


def variant_palette(variants: Sequence[str]) -> dict[str, Any]:
    """One colour per variant (the baseline dark grey), the same in every figure."""
    import seaborn as sns

    others = sorted(variant for variant in set(variants) if variant != "baseline")
    colors = sns.color_palette("colorblind", max(len(others), 1))
    palette: dict[str, Any] = {"baseline": _BASELINE_COLOR}
    palette.update({variant: colors[i % len(colors)] for i, variant in enumerate(others)})
    return palette


def marker_map(levels: Sequence[str]) -> dict[str, str]:
    """One marker per level, in order (cycling past a dozen: the labels on the front still tell them apart)."""
    return {level: _MARKERS[i % len(_MARKERS)] for i, level in enumerate(levels)}


def _legend(figure: Figure, axes: list[Axes], palette: dict[str, Any], markers: dict[str, str], title: str) -> None:
    """One legend right of the figure: the variants' colours, the markers, then what the panels added."""
    from matplotlib.lines import Line2D

    extras: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label in _EXTRA_ENTRIES:
                extras.setdefault(label, handle)
        legend = ax.get_legend()
        if legend is not None:
            legend.remove()
    blank = Line2D([], [], linestyle="none")
    handles: list[Any] = [blank]
    labels = ["variant"]
    for variant, color in palette.items():
        handles.append(Line2D([], [], color=color, marker="o", linestyle="-", linewidth=2))
        labels.append(variant)
    handles.append(blank)
    labels.append(title)
    for level, marker in markers.items():
        handles.append(Line2D([], [], color="#777777", marker=marker, linestyle="none"))
        labels.append(level)
    for label in _EXTRA_ENTRIES:
        if label in extras:
            handles.append(extras[label])
            labels.append(label)
    figure.legend(handles, labels, loc="outside right upper", fontsize=8, frameon=False)


def batch_scaling_figure(cases: pd.DataFrame, column: str, label: str) -> Figure | None:
    """``column`` against batch size: a panel per runtime (a row per machine), colour = variant, marker = rest."""
    import seaborn as sns

    data = cases[cases[column].notna() & cases["batch_size"].notna()] if column in cases else cases.iloc[:0]
    if data.empty:
        return None
    data = series_columns(data.assign(batch_size=data["batch_size"].astype(float)))
    # Replicates of one configuration (two pipelines, say) become one point: their median.
    keys = ["hardware", "runtime", "variant", "marker", "config", "batch_size"]
    data = data.astype({key: str for key in keys if key != "batch_size"})
    data = data.groupby(keys, as_index=False)[column].median()
    runtimes, hardware = sorted(data["runtime"].astype(str).unique()), sorted(data["hardware"].unique())
    palette = variant_palette(data["variant"].astype(str).tolist())
    markers = marker_map(sorted(data["marker"].unique()))
    with sns.axes_style("whitegrid", _STYLE):
        figure, axes = _grid(len(runtimes), len(hardware), sharey=True)
        panels = [(machine, runtime) for machine in hardware for runtime in runtimes]
        for ax, (machine, runtime) in zip(axes, panels, strict=False):
            subset = data[(data["hardware"] == machine) & (data["runtime"].astype(str) == runtime)]
            if not subset.empty:
                sns.lineplot(
                    data=subset, x="batch_size", y=column, hue="variant", style="marker", units="config",
                    estimator=None, markers=markers, dashes=False, palette=palette, ax=ax,
                )  # fmt: skip
                ticks = sorted(subset["batch_size"].unique())
                ax.set_xscale("log", base=2)
                ax.set_xticks(ticks, [f"{tick:g}" for tick in ticks])
            ax.set_xlabel("batch size")
            ax.set_ylabel(label)
            ax.set_ylim(bottom=0)
            ax.set_title(runtime if len(hardware) == 1 else f"{runtime} on {machine}", fontsize=10)
        _legend(figure, axes, palette, markers, "precision and settings")
    return figure


def _label_points(ax: Axes, points: pd.DataFrame, x: str) -> None:
    """Write each point's configuration and batch size next to it (the Pareto front, the recommendation)."""
    for _, row in points.iterrows():
        text = f"{row['config']} bs{row['batch_size']}"
        ax.annotate(text, (row[x], row[m.ACCURACY_TOP1]), xytext=(4, 4), textcoords="offset points", fontsize=7)


def _trade_off_panel(
    ax: Axes, data: pd.DataFrame, x: str, front: pd.DataFrame, *, palette: dict[str, Any], markers: dict[str, str]
) -> None:
    import seaborn as sns

    usable = data[data["valid_measurement"]]
    sns.scatterplot(
        data=usable, x=x, y=m.ACCURACY_TOP1, hue="variant", style="runtime", palette=palette, markers=markers, s=55,
        ax=ax,
    )  # fmt: skip
    invalid = data[~data["valid_measurement"]]
    if not invalid.empty:
        ax.scatter(invalid[x], invalid[m.ACCURACY_TOP1], marker="x", color="#9a9a9a", label="invalid measurement")
    ordered = front.sort_values(x)
    if not ordered.empty:
        ax.step(ordered[x], ordered[m.ACCURACY_TOP1], where="post" if x == m.LATENCY_P50 else "pre", color="black",
                linewidth=1.1, alpha=0.7, label="Pareto front")  # fmt: skip
        _label_points(ax, ordered, x)
    positive = data[x][data[x] > 0]
    if len(positive) > 1 and positive.max() / positive.min() > _LOG_RANGE:
        ax.set_xscale("log")  # a 0.05 ms and a 300 ms case on one linear axis hide every difference
    chosen = data[data["recommended"]]
    if not chosen.empty:
        ax.scatter(chosen[x], chosen[m.ACCURACY_TOP1], marker="*", s=260, facecolors="none", edgecolors="#1f883d",
                   linewidths=1.5, label="recommended")  # fmt: skip


def accuracy_tradeoff_figure(
    cases: pd.DataFrame, *, accuracy_floor: dict[str, float] | None = None, recommended: Sequence[str] = ()
) -> Figure | None:
    """Top-1 against p50 latency (smallest batch size) and against throughput (every batch size), per machine.

    Needs :func:`mlperf_track.report.tables.add_pareto_columns` to have run.

    Args:
        cases: The measured cases of one question.
        accuracy_floor: Per machine, the lowest top-1 the accuracy limit allows (drawn as a dashed line).
        recommended: Run ids of the recommended cases (circled with a star).
    """
    import seaborn as sns

    if m.ACCURACY_TOP1 not in cases or cases[m.ACCURACY_TOP1].isna().all():
        return None
    valid = cases.get(m.VALID_TAG, None)
    data = cases[cases[m.ACCURACY_TOP1].notna()].assign(
        valid_measurement=(valid.astype(str).str.lower() != "false") if valid is not None else True,
        recommended=cases["run_id"].isin(list(recommended)),
    )
    data = data.astype({"variant": str, "runtime": str})
    palette = variant_palette(data["variant"].tolist())
    markers = marker_map(sorted(data["runtime"].unique()))
    hardware = sorted(data["hardware"].unique())
    with sns.axes_style("whitegrid", _STYLE):
        figure, axes = _grid(2, len(hardware), width=5.6, height=4.2)
        for row, machine in enumerate(hardware):
            mine = data[data["hardware"] == machine]
            smallest = mine["batch_size"].min()
            at_smallest = mine[mine["batch_size"] == smallest]
            left, right = axes[2 * row], axes[2 * row + 1]
            front = at_smallest[at_smallest["pareto_latency"]]
            _trade_off_panel(left, at_smallest, m.LATENCY_P50, front, palette=palette, markers=markers)
            left.set_xlabel(f"p50 latency per batch (ms), batch size {smallest}")
            _trade_off_panel(right, mine, m.THROUGHPUT, mine[mine["pareto"]], palette=palette, markers=markers)
            right.set_xlabel("throughput (samples/s), every batch size")
            for ax, hint in ((left, "upper left"), (right, "upper right")):
                floor = (accuracy_floor or {}).get(machine)
                if floor is not None:
                    ax.axhline(floor, color="#cf222e", linestyle="--", linewidth=1, label="accuracy limit")
                ax.set_ylabel("top-1 accuracy")
                where = f"{machine}\n" if len(hardware) > 1 else ""
                ax.set_title(f"{where}{hint} is better; labelled: Pareto front", fontsize=9)
        _legend(figure, axes, palette, markers, "runtime")
    return figure


def hardware_figure(cases: pd.DataFrame) -> Figure | None:
    """Peak throughput per configuration on each machine; ``None`` when all runs come from one machine."""
    import seaborn as sns

    if m.THROUGHPUT not in cases or cases["hardware"].nunique() < 2:
        return None
    peak = cases.groupby(["config", "hardware"], as_index=False)[m.THROUGHPUT].max()
    height = 1.2 + 0.3 * len(peak)
    with sns.axes_style("whitegrid", _STYLE):
        figure, (ax,) = _grid(1, width=7.0, height=height)
        sns.barplot(data=peak, x=m.THROUGHPUT, y="config", hue="hardware", orient="h", palette="colorblind", ax=ax)
        ax.set_xlabel("peak throughput over batch sizes (samples/s)")
        ax.set_ylabel("")
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, title=None, frameon=False)
    return figure
