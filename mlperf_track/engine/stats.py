"""Latency statistics, in the style of pytest-benchmark: plain properties and an ``as_dict()``.

The median's confidence interval is distribution-free: with ``n`` samples, the number of samples below the
true median is Binomial(n, 1/2), so a pair of order statistics brackets the median with a known probability
(the same interval :func:`scipy.stats.quantile_test` reports). It is what adaptive stopping watches.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from functools import cached_property

import numpy as np

from mlperf_track import metrics as m
from mlperf_track.errors import MeasurementError


@functools.lru_cache(maxsize=4096)
def median_ci_ranks(count: int, confidence: float = 0.95) -> tuple[int, int] | None:
    """0-based ranks ``(lo, hi)`` of the sorted samples that bound the median's CI, or ``None``.

    ``None`` means ``count`` is too small for any pair of order statistics to reach ``confidence``
    (fewer than 6 samples at 95%).
    """
    from scipy.stats import binom

    alpha = 1.0 - confidence
    # Smallest j with P(B <= j) >= alpha/2, B ~ Binomial(count, 1/2): X_(j) and X_(count+1-j) (1-based)
    # then cover the median with probability >= confidence.
    j = int(binom.ppf(alpha / 2.0, count, 0.5))
    if j < 1:
        return None
    return j - 1, count - j


def median_ci(sorted_samples: np.ndarray, confidence: float = 0.95) -> tuple[float, float] | None:
    """The distribution-free CI of the median of already sorted samples, or ``None`` if too few."""
    ranks = median_ci_ranks(len(sorted_samples), confidence)
    if ranks is None:
        return None
    return float(sorted_samples[ranks[0]]), float(sorted_samples[ranks[1]])


def relative_ci_width(sorted_samples: np.ndarray, confidence: float = 0.95) -> float:
    """Width of the median's CI divided by the median (``inf`` when the CI is undefined)."""
    interval = median_ci(sorted_samples, confidence)
    median = float(np.median(sorted_samples))
    if interval is None or median <= 0:
        return math.inf
    return (interval[1] - interval[0]) / median


class LatencyStats:
    """Statistics of per-iteration latencies in milliseconds.

    Percentiles use numpy's default (linear interpolation); ``std`` is the sample standard deviation
    (``ddof=1``, 0 for a single sample). Everything is computed lazily and cached.

    Args:
        samples_ms: Per-iteration latencies in milliseconds (at least one, all finite).
        confidence: Confidence level of :attr:`median_ci`.

    Raises:
        MeasurementError: When there are no samples or a sample is not finite.
    """

    def __init__(self, samples_ms: Sequence[float] | np.ndarray, confidence: float = 0.95) -> None:
        data = np.asarray(samples_ms, dtype=np.float64)
        if data.ndim != 1 or data.size == 0:
            raise MeasurementError("no latency samples were recorded; the timed loop did not run")
        if not np.all(np.isfinite(data)):
            raise MeasurementError("a latency sample is not finite; the timer or clock is broken")
        self._sorted = np.sort(data)
        self.confidence = confidence

    def _percentile(self, q: float) -> float:
        return float(np.percentile(self._sorted, q))

    @property
    def count(self) -> int:
        """Number of samples."""
        return int(self._sorted.size)

    @cached_property
    def p50(self) -> float:
        """Median."""
        return self._percentile(50)

    @cached_property
    def p90(self) -> float:
        """90th percentile."""
        return self._percentile(90)

    @cached_property
    def p95(self) -> float:
        """95th percentile."""
        return self._percentile(95)

    @cached_property
    def p99(self) -> float:
        """99th percentile."""
        return self._percentile(99)

    @cached_property
    def mean(self) -> float:
        """Arithmetic mean."""
        return float(np.mean(self._sorted))

    @cached_property
    def std(self) -> float:
        """Sample standard deviation (``ddof=1``; 0 with one sample)."""
        return float(np.std(self._sorted, ddof=1)) if self.count > 1 else 0.0

    @property
    def min(self) -> float:
        """Smallest sample."""
        return float(self._sorted[0])

    @property
    def max(self) -> float:
        """Largest sample."""
        return float(self._sorted[-1])

    @cached_property
    def iqr(self) -> float:
        """Interquartile range (p75 - p25)."""
        return self._percentile(75) - self._percentile(25)

    @cached_property
    def cv(self) -> float:
        """Coefficient of variation, ``std / mean``."""
        return self.std / self.mean if self.mean > 0 else math.inf

    @cached_property
    def median_ci(self) -> tuple[float, float] | None:
        """``(low, high)`` bounds of the median at :attr:`confidence`, or ``None`` with too few samples."""
        return median_ci(self._sorted, self.confidence)

    @cached_property
    def median_ci_rel_width(self) -> float:
        """Width of :attr:`median_ci` relative to the median (``inf`` when undefined)."""
        return relative_ci_width(self._sorted, self.confidence)

    @property
    def total_ms(self) -> float:
        """Sum of the samples: the time the timed calls took."""
        return float(np.sum(self._sorted))

    def throughput(self, batch_size: int) -> float:
        """Samples per second: ``batch_size * count / total timed seconds``.

        This equals ``batch_size / mean``. It is deliberately not the mean of per-iteration rates, which
        overstates throughput whenever latencies vary (Jensen's inequality), nor ``batch_size / p50``.
        """
        return batch_size * self.count / (self.total_ms / 1e3)

    def spread_warning(self, cv_warning: float) -> str | None:
        """A warning when the coefficient of variation exceeds ``cv_warning``, else ``None``."""
        if self.cv <= cv_warning:
            return None
        return (
            f"high latency spread: coefficient of variation {self.cv:.1%} > {cv_warning:.0%} "
            f"(p50 {self.p50:.4g} ms, p99 {self.p99:.4g} ms); the machine may be busy or throttling"
        )

    def as_dict(self) -> dict[str, float]:
        """The statistics keyed by :mod:`mlperf_track.metrics` names (the CI only when defined)."""
        values = {
            m.LATENCY_P50: self.p50,
            m.LATENCY_P90: self.p90,
            m.LATENCY_P95: self.p95,
            m.LATENCY_P99: self.p99,
            m.LATENCY_MEAN: self.mean,
            m.LATENCY_STD: self.std,
            m.LATENCY_MIN: self.min,
            m.LATENCY_MAX: self.max,
            m.LATENCY_IQR: self.iqr,
            m.LATENCY_COUNT: float(self.count),
        }
        if math.isfinite(self.cv):
            values[m.LATENCY_CV] = self.cv
        if self.median_ci is not None:
            values[m.LATENCY_P50_CI_LOW], values[m.LATENCY_P50_CI_HIGH] = self.median_ci
        return values

    def __repr__(self) -> str:
        return f"LatencyStats(count={self.count}, p50={self.p50:.4g} ms, cv={self.cv:.2%})"
