"""Figures of text models: latency against sequence length, TTFT and TPOT against batch, tokens/s against memory.

Drawn only when the runs hold text cases (their ``seq_len`` / ``prompt_len`` params and their metrics), so an
image report is unchanged. Same conventions as :mod:`.plots`: colour by variant, a line per configuration,
built on :class:`matplotlib.figure.Figure` objects (no pyplot).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlperf_track import metrics as m
from mlperf_track.report.plots import _STYLE, variant_palette

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

#: Figure file stems.
LATENCY_VS_SEQ_LEN = "latency_vs_sequence_length"
TTFT_TPOT_VS_BATCH = "ttft_tpot_vs_batch_size"
TOKENS_VS_MEMORY = "tokens_per_s_vs_memory"


def _numeric(cases: pd.DataFrame, *columns: str) -> pd.DataFrame:
    if any(column not in cases for column in columns):
        return cases.iloc[:0]
    data = cases.dropna(subset=list(columns))
    return data.astype({column: float for column in columns})


def latency_vs_sequence_length(cases: pd.DataFrame) -> Figure | None:
    """Encoders: p50 batch latency against the sequence length, a panel per batch size, a line per config."""
    import seaborn as sns
    from matplotlib.figure import Figure

    data = _numeric(cases, "seq_len", "batch_size", m.LATENCY_P50)
    if data.empty or data["seq_len"].nunique() < 2:
        return None
    batches = sorted(data["batch_size"].unique())
    palette = variant_palette(data["variant"].astype(str).tolist())
    with sns.axes_style("whitegrid", _STYLE):
        figure = Figure(figsize=(4.6 * len(batches) + 2.5, 3.8), layout="constrained")
        axes = figure.subplots(1, len(batches), squeeze=False, sharey=True).ravel()
        for ax, batch in zip(axes, batches, strict=True):
            subset = data[data["batch_size"] == batch]
            labels = subset.assign(
                line=subset["variant"].astype(str)
                + "/"
                + subset["runtime"].astype(str)
                + "/"
                + subset["precision"].astype(str)
            )
            sns.lineplot(data=labels, x="seq_len", y=m.LATENCY_P50, hue="variant", style="line", markers=True,
                         dashes=False, palette=palette, ax=ax, estimator="median", errorbar=None)  # fmt: skip
            ax.set_xscale("log", base=2)
            ticks = sorted(subset["seq_len"].unique())
            ax.set_xticks(ticks, [f"{tick:g}" for tick in ticks])
            ax.set(xlabel="sequence length (tokens)", ylabel="p50 latency per batch (ms)", title=f"batch {batch:g}")
            ax.set_ylim(bottom=0)
    return figure


def ttft_tpot_vs_batch(cases: pd.DataFrame) -> Figure | None:
    """Decoders: TTFT p50 and TPOT p50 against the batch size, a line per configuration and prompt/output."""
    import seaborn as sns
    from matplotlib.figure import Figure

    data = _numeric(cases, "batch_size", m.TTFT_P50)
    if data.empty:
        return None
    data = data.assign(
        line=data["variant"].astype(str) + "/" + data["runtime"].astype(str) + "/" + data["precision"].astype(str)
        + " p" + data["prompt_len"].astype(str) + "-o" + data["output_len"].astype(str)
    )  # fmt: skip
    palette = variant_palette(data["variant"].astype(str).tolist())
    with sns.axes_style("whitegrid", _STYLE):
        figure = Figure(figsize=(11.5, 4.0), layout="constrained")
        axes = figure.subplots(1, 2, squeeze=False).ravel()
        for ax, (column, label) in zip(
            axes, ((m.TTFT_P50, "TTFT p50 (ms)"), (m.TPOT_P50, "TPOT p50 (ms)")), strict=True
        ):
            if column not in data or data[column].isna().all():
                ax.set_visible(False)
                continue
            sns.lineplot(data=data, x="batch_size", y=column, hue="variant", style="line", markers=True, dashes=False,
                         palette=palette, ax=ax, estimator="median", errorbar=None)  # fmt: skip
            ax.set_xscale("log", base=2)
            ticks = sorted(data["batch_size"].unique())
            ax.set_xticks(ticks, [f"{tick:g}" for tick in ticks])
            ax.set(xlabel="batch size", ylabel=label)
            ax.set_ylim(bottom=0)
            ax.legend(fontsize=7)
    return figure


def tokens_vs_memory(cases: pd.DataFrame) -> Figure | None:
    """Tokens per second against peak memory, one point per case, labelled by batch size."""
    import seaborn as sns
    from matplotlib.figure import Figure

    data = _numeric(cases, m.TOKENS_PER_S, "memory_mb", "batch_size")
    if data.empty:
        return None
    palette = variant_palette(data["variant"].astype(str).tolist())
    with sns.axes_style("whitegrid", _STYLE):
        figure = Figure(figsize=(7.5, 4.5), layout="constrained")
        ax = figure.subplots()
        sns.scatterplot(
            data=data, x="memory_mb", y=m.TOKENS_PER_S, hue="variant", style="runtime", palette=palette, ax=ax, s=60
        )
        for _, row in data.iterrows():
            ax.annotate(f"bs{row['batch_size']:g}", (row["memory_mb"], row[m.TOKENS_PER_S]), xytext=(3, 3),
                        textcoords="offset points", fontsize=7)  # fmt: skip
        ax.set(xlabel="peak memory (MB)", ylabel="tokens/s")
        ax.set_ylim(bottom=0)
    return figure


def text_figures(cases: pd.DataFrame) -> dict[str, Figure]:
    """Every text figure the cases allow, by file stem (empty for image runs)."""
    builders = {
        LATENCY_VS_SEQ_LEN: latency_vs_sequence_length,
        TTFT_TPOT_VS_BATCH: ttft_tpot_vs_batch,
        TOKENS_VS_MEMORY: tokens_vs_memory,
    }
    figures = {}
    for stem, build in builders.items():
        figure = build(cases)
        if figure is not None:
            figures[stem] = figure
    return figures
