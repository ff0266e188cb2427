"""LatencyStats against numpy and scipy on known data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import quantile_test

from mlperf_track import metrics as m
from mlperf_track.engine.stats import LatencyStats, median_ci_ranks, relative_ci_width
from mlperf_track.errors import MeasurementError


@pytest.fixture
def samples() -> np.ndarray:
    return np.random.default_rng(0).lognormal(mean=1.0, sigma=0.3, size=257)


def test_properties_match_numpy(samples: np.ndarray) -> None:
    stats = LatencyStats(samples)
    for name, q in (("p50", 50), ("p90", 90), ("p95", 95), ("p99", 99)):
        assert getattr(stats, name) == pytest.approx(np.percentile(samples, q))
    assert stats.mean == pytest.approx(samples.mean())
    assert stats.std == pytest.approx(samples.std(ddof=1))
    assert stats.min == samples.min() and stats.max == samples.max()
    assert stats.iqr == pytest.approx(np.percentile(samples, 75) - np.percentile(samples, 25))
    assert stats.count == 257
    assert stats.cv == pytest.approx(samples.std(ddof=1) / samples.mean())


def test_exact_values_on_small_known_data() -> None:
    stats = LatencyStats([4.0, 1.0, 3.0, 2.0])
    assert (stats.p50, stats.mean, stats.min, stats.max) == (2.5, 2.5, 1.0, 4.0)
    assert stats.std == pytest.approx(math.sqrt(5 / 3))
    assert stats.iqr == pytest.approx(1.5)
    assert stats.median_ci is None  # 4 samples cannot bound the median at 95%


@pytest.mark.parametrize("count", [6, 10, 57, 100, 1001])
def test_median_ci_matches_scipy_quantile_test(count: int) -> None:
    data = np.random.default_rng(count).normal(10.0, 1.0, size=count)
    expected = quantile_test(data, q=float(np.median(data)), p=0.5).confidence_interval(0.95)
    low, high = LatencyStats(data).median_ci or (math.nan, math.nan)
    assert (low, high) == pytest.approx((expected.low, expected.high))


def test_median_ci_ranks_textbook_value() -> None:
    # n = 100: the 95% CI of the median is X(40)..X(61) (1-based), a standard table value.
    assert median_ci_ranks(100, 0.95) == (39, 60)
    assert median_ci_ranks(5, 0.95) is None


def test_relative_ci_width_shrinks_with_more_samples() -> None:
    rng = np.random.default_rng(1)
    few = np.sort(rng.normal(10, 1, 20))
    many = np.sort(rng.normal(10, 1, 2000))
    assert relative_ci_width(many) < relative_ci_width(few)
    assert relative_ci_width(np.sort(np.ones(3))) == math.inf


def test_as_dict_keys_and_throughput(samples: np.ndarray) -> None:
    stats = LatencyStats(samples)
    values = stats.as_dict()
    assert set(m.LATENCY_KEYS) <= set(values)
    assert {m.LATENCY_IQR, m.LATENCY_CV, m.LATENCY_COUNT, m.LATENCY_P50_CI_LOW, m.LATENCY_P50_CI_HIGH} <= set(values)
    assert values[m.LATENCY_P50_CI_LOW] <= values[m.LATENCY_P50] <= values[m.LATENCY_P50_CI_HIGH]
    # batch_size * count / total seconds, i.e. batch / mean, never the mean of per-call rates
    assert stats.throughput(8) == pytest.approx(8 / (samples.mean() / 1e3))
    assert stats.throughput(8) < float(np.mean(8 / (samples / 1e3)))


def test_spread_warning() -> None:
    assert LatencyStats([1.0, 1.01, 0.99, 1.0]).spread_warning(0.1) is None
    warning = LatencyStats([1.0, 3.0, 1.0, 5.0]).spread_warning(0.1)
    assert warning is not None and "coefficient of variation" in warning


@pytest.mark.parametrize("bad", [[], [1.0, math.nan], [math.inf]])
def test_rejects_empty_or_non_finite(bad: list[float]) -> None:
    with pytest.raises(MeasurementError):
        LatencyStats(bad)
