"""Is a measurement usable? The validity verdict, computed from the samples alone.

Like ``torch.utils.benchmark``'s ``Measurement.meets_confidence``, the verdict is a function of the data, not
a string stored while measuring, so merging replicates (:func:`mlperf_track.engine.result.merge_results`)
recomputes it over the merged samples. The rules, with thresholds from :class:`~mlperf_track.spec.TimingConfig`:

* enough samples: at least ``min_iters``, and enough for a distribution-free CI of the median;
* precise: that CI is at most ``target_rel_ci`` of the median wide (the time or iteration cap may stop the
  loop before it is);
* long enough: the measured time (sum of the timed calls) reaches ``min_time_s`` (unless the user capped the
  window at or below it with ``max_time_s``, which the measurement warns about instead);
* not too spread: coefficient of variation at most ``max_cv``;
* stable: the samples, split by call order into ``stability_windows`` consecutive windows, have window
  medians whose max/min ratio is within ``1 + stability_tolerance``: perf_analyzer's rule for its last three
  measurement windows (``--stability-percentage``, default 10%). Its windows hold thousands of requests; ours
  may hold a few calls, so a difference must also be significant (Kruskal-Wallis, p < 0.01) to count. After a merge of
  interleaved replicates the windows span replicates, so the rule then also says whether replicates agree.

Each reason is one short sentence with the numbers, so a user reading ``valid.reasons`` knows what to change.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from mlperf_track.engine.stats import LatencyStats
from mlperf_track.spec import TimingConfig

#: Fewest samples per stability window for the rule to be applied (a median of fewer says nothing).
MIN_SAMPLES_PER_WINDOW = 3
#: Significance level at which windows whose medians differ beyond the tolerance count as really different.
STABILITY_ALPHA = 0.01


def ci_reason(stats: LatencyStats, timing: TimingConfig, stop_reason: str | None = None) -> str | None:
    """Why the samples cannot say where the median is: too few of them, or its CI wider than the target."""
    if stats.median_ci is None:
        return f"too few samples for a confidence interval of the median (n={stats.count})"
    if stats.count < timing.min_iters:
        return f"too few samples: {stats.count} timed calls (min_iters={timing.min_iters})"
    width = stats.median_ci_rel_width
    if width <= timing.target_rel_ci:
        return None
    stopped = f"stopped at {stop_reason} with " if stop_reason and stop_reason != "ci_reached" else ""
    return (
        f"{stopped}the median's {timing.confidence:.0%} CI {width:.2%} wide, above the "
        f"{timing.target_rel_ci:.2%} target"
    )


def _windows(samples_ms: Sequence[float], windows: int) -> list[np.ndarray] | None:
    if len(samples_ms) < windows * MIN_SAMPLES_PER_WINDOW:
        return None
    return list(np.array_split(np.asarray(samples_ms, dtype=np.float64), windows))


def window_medians(samples_ms: Sequence[float], windows: int) -> list[float] | None:
    """Medians of ``windows`` consecutive, near-equal parts of ``samples_ms`` (``None`` when too few samples)."""
    parts = _windows(samples_ms, windows)
    return None if parts is None else [float(np.median(part)) for part in parts]


def stability_reason(samples_ms: Sequence[float], timing: TimingConfig) -> str | None:
    """Why the samples are not stable, or ``None`` (also when there are too few to judge).

    The windows' medians must differ by more than the tolerance (max/min - 1) and the difference must be
    beyond their own sampling noise (Kruskal-Wallis across the windows, p < :data:`STABILITY_ALPHA`): with a
    handful of samples per window, medians of a steady process differ by 10% by chance alone.
    """
    from scipy.stats import kruskal

    parts = _windows(samples_ms, timing.stability_windows)
    if parts is None:
        return None
    medians = [float(np.median(part)) for part in parts]
    low, high = min(medians), max(medians)
    if low <= 0 or high / low - 1.0 <= timing.stability_tolerance:
        return None
    p_value = float(kruskal(*parts).pvalue)
    if not p_value < STABILITY_ALPHA:
        return None
    listed = ", ".join(f"{value:.4g}" for value in medians)
    return (
        f"not stable: the medians of {len(medians)} consecutive windows ({listed} ms) differ by "
        f"{high / low - 1.0:.1%} (max/min; tolerance {timing.stability_tolerance:.0%}; Kruskal-Wallis "
        f"p={p_value:.2g})"
    )


def duration_reason(samples_ms: Sequence[float], timing: TimingConfig, stop_reason: str | None = None) -> str | None:
    """Why the measured time is too short, or ``None``."""
    minimum = timing.min_time_s
    if minimum <= 0 or timing.max_time_s <= minimum:
        return None  # no minimum, or a time cap at or below it that the user chose (measure warns about it)
    measured = float(np.sum(np.asarray(samples_ms, dtype=np.float64))) / 1e3
    # 1 ns of slack per sample: the loop compares integer nanoseconds, the samples are float milliseconds.
    if measured + len(samples_ms) * 1e-9 >= minimum:
        return None
    stopped = f"stopped at {stop_reason} after " if stop_reason and stop_reason != "ci_reached" else ""
    hint = f"; raise max_iters ({timing.max_iters})" if stop_reason == "max_iters" else ""
    return f"{stopped}{measured:.3g} s measured, under the minimum measured duration of {minimum:g} s{hint}"


def invalid_reasons(
    samples_ms: Sequence[float], timing: TimingConfig, *, stop_reason: str | None = None
) -> tuple[str, ...]:
    """Every rule the samples break, as short sentences (empty: the measurement is valid).

    Args:
        samples_ms: Per-call latencies in call order (merged replicates: concatenated in run order).
        timing: The thresholds.
        stop_reason: Why the loop stopped (``ci_reached``, ``max_iters``, ``max_time``), only for the wording;
            ``None`` for merged results.
    """
    if len(samples_ms) == 0:
        return ("no timed samples",)
    stats = LatencyStats(samples_ms, confidence=timing.confidence)
    found = [
        ci_reason(stats, timing, stop_reason),
        duration_reason(samples_ms, timing, stop_reason),
        spread_reason(stats, timing),
        stability_reason(samples_ms, timing),
    ]
    return tuple(reason for reason in found if reason)


def spread_reason(stats: LatencyStats, timing: TimingConfig) -> str | None:
    """Why the spread is too high, or ``None``."""
    if stats.count < 2 or (math.isfinite(stats.cv) and stats.cv <= timing.max_cv):
        return None
    return (
        f"spread too high: coefficient of variation {stats.cv:.1%} above {timing.max_cv:.0%} "
        f"(p50 {stats.p50:.4g} ms, p99 {stats.p99:.4g} ms)"
    )
