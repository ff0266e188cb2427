"""Figures of a study: optimisation history, Pareto front (several objectives), and the trade-off of the
objective against peak memory with the limit drawn in.

History and Pareto front come from :mod:`optuna.visualization.matplotlib` (which reads the trials'
constraints and greys out infeasible ones); the trade-off plot is seaborn over the trials table.
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from mlperf_track.tuning.objective import Target

if TYPE_CHECKING:
    import optuna
    import pandas as pd
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

#: Memory columns of the trials table, most complete first.
_MEMORY_COLUMNS = ("gpu_process_peak_mb", "gpu_peak_allocated_mb", "cpu_rss_peak_mb")


def _figure_of(axes: Any) -> Figure:
    figure = getattr(axes, "figure", None)
    if figure is None:  # optuna returns an array of axes for some plots
        figure = axes.flat[0].figure
    return cast("Figure", figure)


def history_figure(study: optuna.Study, target: Target, index: int) -> Figure:
    """Objective value per trial and the best so far."""
    from optuna.visualization.matplotlib import plot_optimization_history

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        axes = plot_optimization_history(
            study,
            target=(lambda trial: float(trial.values[index])) if len(study.directions) > 1 else None,
            target_name=f"{target.name} ({target.metric})",
        )
    figure = _figure_of(axes)
    figure.set_size_inches(8, 5)
    return figure


def pareto_figure(study: optuna.Study, targets: tuple[Target, ...]) -> Figure:
    """The feasible Pareto front among every trial (2 or 3 objectives)."""
    from optuna.visualization.matplotlib import plot_pareto_front

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        axes = plot_pareto_front(study, target_names=[f"{t.name} ({t.metric})" for t in targets])
    figure = _figure_of(axes)
    figure.set_size_inches(8, 6)
    return figure


def tradeoff_figure(
    frame: pd.DataFrame, target: Target, memory_limit_mb: float | None, best: Sequence[int] = ()
) -> Figure | None:
    """The objective against peak memory; ``None`` without memory data.

    Readable at any number of configurations: colour says whether a trial may be the answer (the eligibility
    rule's ``eligible`` column, else Optuna's feasibility), the marker is the runtime, the size the batch size,
    and only the answer (``best`` trial numbers) carries a text label.
    """
    import seaborn as sns
    from matplotlib.figure import Figure

    column = next((c for c in _MEMORY_COLUMNS if c in frame and frame[c].notna().any()), None)
    value = f"value.{target.name}"
    if column is None or value not in frame or frame[value].isna().all():
        return None
    data = frame[frame[value].notna() & frame[column].notna()].copy()
    flag = "eligible" if "eligible" in data else "feasible"
    data["answer"] = data[flag].map({True: "eligible", False: "not eligible"})
    data["runtime"] = data["runtime"].astype(str) if "runtime" in data else data["config"].astype(str)
    figure = Figure(figsize=(9, 6), layout="constrained")
    axes = figure.subplots()
    sns.scatterplot(
        data=data, x=column, y=value, hue="answer", hue_order=["eligible", "not eligible"],
        palette={"eligible": "#1f883d", "not eligible": "#9a9a9a"}, style="runtime", size="batch_size", ax=axes,
    )  # fmt: skip
    for _, row in data[data["number"].isin(list(best))].iterrows():
        label = f"trial {row['number']}: {row['config']} bs{row['batch_size']}"
        axes.annotate(label, (row[column], row[value]), xytext=(5, 5), textcoords="offset points", fontsize=8)
    if memory_limit_mb is not None:
        axes.axvline(memory_limit_mb, color="red", linestyle="--", label=f"limit {memory_limit_mb:g} MB")
    axes.set_xlabel(f"peak memory ({column})")
    axes.set_ylabel(f"{target.name} ({target.metric})")
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    return figure


def study_figures(
    study: optuna.Study,
    frame: pd.DataFrame,
    targets: tuple[Target, ...],
    memory_limit_mb: float | None,
    best: Sequence[int] = (),
) -> dict[str, Figure]:
    """Every figure that can be drawn for the study, by artifact file name; a figure that fails is skipped."""
    figures: dict[str, Figure] = {}
    builders: list[tuple[str, Callable[[], Figure | None]]] = [
        (f"history_{target.name}.png", functools.partial(history_figure, study, target, index))
        for index, target in enumerate(targets)
    ]
    if len(targets) in (2, 3):
        builders.append(("pareto_front.png", functools.partial(pareto_figure, study, targets)))
    trade_off = functools.partial(tradeoff_figure, frame, targets[0], memory_limit_mb, best)
    builders.append(("tradeoff_memory.png", trade_off))
    for name, build in builders:
        try:
            figure = build()
        except Exception as error:  # a figure must never fail the study; say why it is missing
            logger.warning("figure %s not drawn: %s: %s", name, type(error).__name__, error)
            continue
        if figure is not None:
            figures[name] = figure
    return figures
