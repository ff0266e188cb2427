"""LoadGen's early stopping and validity rules, checked against an independent binomial computation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlperf_track.engine.load.config import LoadConfig
from mlperf_track.engine.load.validity import (
    early_stopping_estimate,
    judge,
    min_passing_queries,
    nearest_rank,
    overlatency_odds,
)


def _binomial_cdf(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


def test_odds_is_the_binomial_cdf_of_slow_queries() -> None:
    assert overlatency_odds(90, 3, 0.95) == pytest.approx(_binomial_cdf(3, 93, 0.05), rel=1e-9)


@pytest.mark.parametrize(("slow", "percentile"), [(0, 0.99), (1, 0.9), (5, 0.99), (3, 0.95)])
def test_min_passing_is_the_smallest_h_below_one_minus_confidence(slow: int, percentile: float) -> None:
    h = min_passing_queries(slow, percentile, 0.99)
    assert _binomial_cdf(slow, h + slow, 1 - percentile) < 0.01
    assert _binomial_cdf(slow, h - 1 + slow, 1 - percentile) >= 0.01


def test_early_stopping_estimate_is_the_largest_passing_order_statistic() -> None:
    latencies = np.arange(1.0, 1001.0)  # sorted, distinct: the estimate names its rank
    estimate = early_stopping_estimate(latencies, 0.90, 0.99)
    largest = 1
    while _binomial_cdf(largest + 1, 1000, 0.10) < 0.01:  # the CDF grows with t: passing t are 1..largest
        largest += 1
    assert estimate == latencies[1000 - largest]
    assert estimate > nearest_rank(latencies, 0.90)  # an upper bound of the p90
    assert early_stopping_estimate(latencies[:63], 0.90, 0.99) is None  # fewer than 64: no estimate
    assert early_stopping_estimate(latencies[:64], 0.90, 0.99) is not None


def _judge(config: LoadConfig, latencies: np.ndarray, **overrides: float) -> tuple[str, ...]:
    values = {"issued": len(latencies), "last_issue_s": 100.0, "duration_s": 100.0, "failed": 0, **overrides}
    return judge(config, latencies_ms=latencies, **values).reasons  # type: ignore[arg-type]


def test_server_valid_needs_the_p99_under_the_bound_and_early_stopping() -> None:
    config = LoadConfig("server", target_qps=10.0, latency_bound_ms=10.0, min_duration_s=1.0, min_query_count=1)
    assert _judge(config, np.full(459, 5.0)) == ()
    short = _judge(config, np.full(458, 5.0))
    assert any("early stopping not met" in reason and "at least 1 more" in reason for reason in short)
    slow = np.concatenate([np.full(990, 5.0), np.full(10, 50.0)])  # p99 at the bound's edge: 1% slow
    reasons = _judge(config, slow)
    assert any("early stopping not met" in reason for reason in reasons)
    over = np.concatenate([np.full(900, 5.0), np.full(100, 50.0)])
    assert any("over the bound" in reason for reason in _judge(config, over))


def test_duration_count_and_failures_make_a_run_invalid() -> None:
    config = LoadConfig("single_stream", min_duration_s=5.0, min_query_count=100)
    latencies = np.full(200, 1.0)
    assert _judge(config, latencies) == ()
    assert any("shorter than min_duration_s" in r for r in _judge(config, latencies, last_issue_s=4.9))
    assert any("the minimum is 100" in r for r in _judge(config, latencies[:99]))
    assert any("failed or were dropped" in r for r in _judge(config, latencies, failed=2))


def test_closed_loop_bound_applies_to_the_upper_confidence_bound() -> None:
    latencies = np.concatenate([np.full(950, 1.0), np.full(50, 20.0)])
    loose = LoadConfig("single_stream", latency_bound_ms=30.0, min_duration_s=0, min_query_count=1)
    tight = LoadConfig("single_stream", latency_bound_ms=10.0, min_duration_s=0, min_query_count=1)
    assert _judge(loose, latencies) == ()
    # p90 itself is 1 ms, but with 5% slow queries the 99% upper bound of the p90 is still 1 ms; 60% slow is not.
    assert _judge(tight, latencies) == ()
    mostly_slow = np.concatenate([np.full(400, 1.0), np.full(600, 20.0)])
    assert any("upper bound" in r for r in _judge(tight, mostly_slow))


def test_without_early_stopping_the_bound_applies_to_the_plain_percentile() -> None:
    config = LoadConfig("single_stream", latency_bound_ms=10.0, min_duration_s=0, min_query_count=10,
                        early_stopping=False)  # fmt: skip
    assert _judge(config, np.full(10, 5.0)) == ()  # 10 queries: far too few for early stopping, yet VALID
    slow = np.concatenate([np.full(85, 5.0), np.full(15, 20.0)])
    assert any("p90 latency 20 ms is over the bound" in reason for reason in _judge(config, slow))
    server = LoadConfig("server", target_qps=1.0, latency_bound_ms=10.0, min_duration_s=0, min_query_count=10,
                        early_stopping=False)  # fmt: skip
    assert _judge(server, np.full(10, 5.0)) == ()


def test_offline_is_judged_on_its_duration_not_on_a_percentile() -> None:
    config = LoadConfig("offline", min_duration_s=2.0, min_query_count=10)
    assert _judge(config, np.full(10, 1000.0), last_issue_s=0.0, duration_s=2.5) == ()
    assert any("shorter" in r for r in _judge(config, np.full(10, 1000.0), last_issue_s=0.0, duration_s=1.0))
