"""Validity as MLPerf LoadGen defines it: minimum duration, minimum query count, and early stopping.

Early stopping (LoadGen ``early_stopping.cc`` and ``results.cc``) asks whether the run has enough queries to
claim, with confidence ``c`` (0.99), that the scenario's latency percentile ``p`` meets its bound. If the true
fraction of queries slower than the bound were ``1 - p``, seeing ``t`` or fewer slow ones among ``n`` would
have probability ``P(Binomial(n, 1 - p) <= t)``; the run passes when that is below ``1 - c``:

- Server: ``t`` = queries over the latency bound; pass when ``P(Bin(n, 1-p) <= t) < 1 - c``. Otherwise LoadGen
  reports how many more queries, all under the bound, would be needed.
- SingleStream / MultiStream (and our ``concurrency``): the largest ``t`` that passes gives the
  *early-stopping estimate*, the ``t``-th largest latency: a ``c``-confidence upper bound of the percentile.
  A run with too few queries for ``t = 1`` has no estimate. With a latency bound, the estimate must be under it.
- Offline: no latency percentile.

With ``early_stopping`` off (LoadGen's ``use_early_stopping=false``), a latency bound applies to the plain
nearest-rank percentile instead.

The binomial CDF is scipy's (LoadGen evaluates the same regularized incomplete beta by hand).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mlperf_track.engine.load.config import CLOSED_LOOP, OFFLINE, SERVER, LoadConfig


def overlatency_odds(passing: int, slow: int, percentile: float) -> float:
    """``P(Binomial(passing + slow, 1 - percentile) <= slow)``: LoadGen's ``odds(h, t, p, d=0)``."""
    from scipy.stats import binom

    return float(binom.cdf(slow, passing + slow, 1.0 - percentile))


def min_passing_queries(slow: int, percentile: float, confidence: float) -> int:
    """The fewest queries under the bound ``h`` that, with ``slow`` over it, pass early stopping."""
    threshold = 1.0 - confidence
    high = max(1, math.ceil(math.log(threshold) / math.log(percentile)))
    while overlatency_odds(high, slow, percentile) >= threshold:
        high *= 2
    low = 0
    while low < high:  # smallest h in [low, high] with odds < threshold (odds fall as h grows)
        middle = (low + high) // 2
        if overlatency_odds(middle, slow, percentile) < threshold:
            high = middle
        else:
            low = middle + 1
    return low


def min_queries_for_early_stopping(percentile: float, confidence: float, slow_allowed: int = 0) -> int:
    """The fewest queries with which a run with ``slow_allowed`` slow queries passes (459 at p99 with t=0)."""
    return slow_allowed + min_passing_queries(slow_allowed, percentile, confidence)


def nearest_rank(sorted_values: np.ndarray, percentile: float) -> float:
    """LoadGen's percentile: ``sorted[floor(n * p)]`` (clamped to the last element)."""
    index = min(len(sorted_values) - 1, math.floor(len(sorted_values) * percentile))
    return float(sorted_values[index])


def early_stopping_estimate(sorted_latencies: np.ndarray, percentile: float, confidence: float) -> float | None:
    """The ``confidence`` upper bound of the ``percentile`` latency, or ``None`` with too few queries."""
    from scipy.stats import binom

    count = len(sorted_latencies)
    if count == 0:
        return None
    slow = np.arange(1, count + 1)
    passing = binom.cdf(slow, count, 1.0 - percentile) < 1.0 - confidence  # True for t = 1..T, then False
    largest = int(np.count_nonzero(passing))
    if largest == 0:
        return None
    return float(sorted_latencies[count - largest])


@dataclass(frozen=True)
class Verdict:
    """Whether a run is VALID, and why not.

    Attributes:
        reasons: Why the run is INVALID (empty: VALID).
        early_stopping_ms: The early-stopping estimate of the percentile (closed-loop scenarios), if any.
        over_bound: Queries over the latency bound (when there is one).
    """

    reasons: tuple[str, ...]
    early_stopping_ms: float | None = None
    over_bound: int | None = None

    @property
    def valid(self) -> bool:
        """No reasons."""
        return not self.reasons


def judge(
    config: LoadConfig,
    *,
    latencies_ms: np.ndarray,
    issued: int,
    last_issue_s: float,
    duration_s: float,
    failed: int,
) -> Verdict:
    """Apply LoadGen's rules to a finished run.

    Args:
        config: The scenario, its bound, percentile and run-length minimums.
        latencies_ms: Latencies of the completed queries.
        issued: Queries issued.
        last_issue_s: When the last query was due (Server: scheduled; closed loop: issued).
        duration_s: From the first arrival to the last completion (Offline's minimum applies to it).
        failed: Queries that failed or were dropped.
    """
    reasons = []
    percentile = config.target_percentile
    label = f"p{percentile * 100:g}"
    bound = config.latency_bound_ms
    if failed:
        reasons.append(f"{failed} of {issued} queries failed or were dropped (LoadGen needs every query answered)")
    min_queries = config.resolved_min_queries()
    if issued < min_queries:
        reasons.append(f"only {issued} queries issued; the minimum is {min_queries}")
    measured_s = duration_s if config.scenario == OFFLINE else last_issue_s
    if measured_s < config.min_duration_s:
        hint = "raise --rate or --min-queries" if config.scenario in (SERVER, OFFLINE) else "raise --min-queries"
        reasons.append(f"ran {measured_s:.3g} s, shorter than min_duration_s={config.min_duration_s:g} ({hint})")
    ordered = np.sort(np.asarray(latencies_ms, dtype=np.float64))
    if ordered.size == 0:
        return Verdict((*reasons, "no query completed"))
    over = None if bound is None else int(np.count_nonzero(ordered > bound))
    estimate = None
    if config.scenario == SERVER:
        assert bound is not None and over is not None
        observed = nearest_rank(ordered, percentile)
        if observed > bound:
            reasons.append(f"{label} latency {observed:.4g} ms is over the bound {bound:g} ms (lower the rate)")
        if config.early_stopping and overlatency_odds(ordered.size - over, over, percentile) >= 1.0 - config.confidence:
            more = min_passing_queries(over, percentile, config.confidence) + over - ordered.size
            reasons.append(
                f"early stopping not met: {over} of {ordered.size} queries over {bound:g} ms; at least {more} more "
                f"queries, all under the bound, are needed for {config.confidence:.0%} confidence in the {label}"
            )
    elif config.scenario in CLOSED_LOOP and config.early_stopping:
        estimate = early_stopping_estimate(ordered, percentile, config.confidence)
        if estimate is None:
            needed = min_queries_for_early_stopping(percentile, config.confidence, 1)
            reasons.append(f"early stopping needs at least {needed} queries for the {label}; {ordered.size} completed")
        elif bound is not None and estimate > bound:
            reasons.append(
                f"the {label}'s {config.confidence:.0%} upper bound {estimate:.4g} ms is over the bound {bound:g} ms"
            )
    elif config.scenario in CLOSED_LOOP and bound is not None:
        observed = nearest_rank(ordered, percentile)
        if observed > bound:
            reasons.append(f"{label} latency {observed:.4g} ms is over the bound {bound:g} ms")
    return Verdict(tuple(reasons), estimate, over)
