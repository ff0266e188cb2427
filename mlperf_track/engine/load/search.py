"""``max_qps``: the highest Server rate whose run is VALID (p99 under the bound, early stopping met).

A bracketing search, as Model Analyzer and LoadGen's own tuning do by hand: from a starting rate, double
until a rate fails (or halve until one passes), then bisect between the highest passing and the lowest
failing rate until they are within ``tolerance`` of each other. Every probe is a full Server run, returned
with the answer, so each load point can be logged.

Halving never goes below the lowest *schedulable* rate
(:func:`~mlperf_track.engine.load.queries.lowest_schedulable_qps`): under it, a Server run cannot issue
LoadGen's minimum query count before ``max_duration_s`` (459 queries at p99 in 60 s: 8.4 q/s), so it is
INVALID whatever its latency and says nothing about the rate. The search probes that floor (plus
:data:`FLOOR_MARGIN`) once instead, and stops there when it fails.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from mlperf_track import metrics as m
from mlperf_track.engine.load.result import LoadResult
from mlperf_track.spec import check_positive_float, check_positive_int

logger = logging.getLogger(__name__)

#: How a search ended.
STOP_CONVERGED = "converged"
STOP_MAX_PROBES = "max_probes"
STOP_NONE_PASSED = "none_passed"
STOP_CEILING = "ceiling"
#: The search probes the floor this much above it: the schedule's last query is then due ~2% before
#: ``max_duration_s``, so a generator running a little late still issues it before the time cap.
FLOOR_MARGIN = 1.02


@dataclass(frozen=True)
class SearchConfig:
    """How to search for ``max_qps``.

    Attributes:
        start_qps: The first rate probed (a capacity estimate); ``None``: the caller calibrates one.
        tolerance: Stop when ``(fail - pass) / pass`` is at most this (0.05: within 5%).
        min_qps: Give up when no rate down to this one passes.
        max_qps: Never probe above this rate.
        max_probes: At most this many Server runs.
    """

    start_qps: float | None = None
    tolerance: float = 0.05
    min_qps: float = 0.1
    max_qps: float = 1e6
    max_probes: int = 12

    def __post_init__(self) -> None:
        if self.start_qps is not None:
            check_positive_float("start_qps", self.start_qps)
        check_positive_float("tolerance", self.tolerance)
        check_positive_float("min_qps", self.min_qps)
        check_positive_float("max_qps", self.max_qps)
        check_positive_int("max_probes", self.max_probes)


@dataclass
class Probe:
    """One rate tried: its result, or the error that ended it (a case killed by a limit)."""

    rate: float
    result: LoadResult | None = None
    error: BaseException | None = None

    @property
    def passed(self) -> bool:
        """Whether the rate held (a VALID run)."""
        return self.result is not None and self.result.valid


@dataclass
class SearchOutcome:
    """What the search found.

    Attributes:
        max_qps: The highest passing target rate, or ``None`` when none passed.
        lowest_failing: The lowest failing rate above it, if one was probed.
        stop_reason: ``converged``, ``max_probes``, ``none_passed`` or ``ceiling``.
        probes: Every probe in the order run.
        floor_qps: The lowest schedulable rate of the probes' scenario (``None``: unknown, no probe returned a
            result); the search never probed under it.
    """

    max_qps: float | None
    lowest_failing: float | None
    stop_reason: str
    probes: list[Probe] = field(default_factory=list)
    floor_qps: float | None = None

    @property
    def best(self) -> Probe | None:
        """The probe at :attr:`max_qps`."""
        return next((probe for probe in self.probes if probe.passed and probe.rate == self.max_qps), None)

    @property
    def max_scheduled_qps(self) -> float | None:
        """The rate the best probe's Poisson schedule actually offered (LoadGen's "scheduled samples per
        second", the number it reports): a seeded sample of arrivals deviates from the target rate by a few %.
        """
        best = self.best
        if best is None or best.result is None:
            return None
        return best.result.metrics.get(m.LOAD_OFFERED_QPS)


def _next_rate(passing: float | None, failing: float | None, rate: float) -> float:
    if passing is None:
        return rate / 2.0
    if failing is None:
        return rate * 2.0
    return (passing + failing) / 2.0


def _floor_of(probe: Probe) -> float | None:
    """The lowest schedulable rate of the probe's scenario (``None`` without a result)."""
    from mlperf_track.engine.load.config import SERVER
    from mlperf_track.engine.load.queries import lowest_schedulable_qps

    if probe.result is None or probe.result.config.scenario != SERVER:
        return None
    return lowest_schedulable_qps(probe.result.config)


def _verdict(probe: Probe, unschedulable: bool) -> str:
    if probe.passed:
        return "pass"
    return "under the floor (too few queries before max_duration_s)" if unschedulable else "fail"


def find_max_qps(probe_rate: Callable[[float], LoadResult], search: SearchConfig) -> SearchOutcome:
    """Search for the highest rate at which ``probe_rate(rate)`` returns a VALID Server result.

    Args:
        probe_rate: Runs the Server scenario at a rate. An exception counts as a failing rate and is kept in
            the probe (so a case killed by a memory limit does not end the search).
        search: Start, tolerance and bounds.
    """
    if search.start_qps is None:
        raise ValueError("find_max_qps needs search.start_qps (calibrate one first)")
    passing: float | None = None
    failing: float | None = None
    floor: float | None = None
    probes: list[Probe] = []
    rate = min(search.start_qps, search.max_qps)

    def outcome(best: float | None, reason: str) -> SearchOutcome:
        return SearchOutcome(best, failing, reason, probes, floor)

    while True:
        probe = Probe(rate)
        try:
            probe.result = probe_rate(rate)
        except Exception as error:  # a failed point is a failing rate; the search goes on
            logger.error("the probe at %.4g queries/s failed: %s: %s", rate, type(error).__name__, error)
            probe.error = error
        probes.append(probe)
        floor = _floor_of(probe) if floor is None else floor
        # Under the floor a run cannot issue its minimum queries: INVALID, but it says nothing about the rate.
        unschedulable = floor is not None and rate < floor and not probe.passed
        if probe.passed:
            passing = max(rate, passing or rate)
        elif not unschedulable:
            failing = min(rate, failing or rate)
        logger.info("probe %.4g queries/s: %s", rate, _verdict(probe, unschedulable))
        if passing is not None and failing is not None and failing - passing <= search.tolerance * passing:
            return outcome(passing, STOP_CONVERGED)
        if len(probes) >= search.max_probes:
            return outcome(passing, STOP_MAX_PROBES if passing else STOP_NONE_PASSED)
        rate = rate if unschedulable else _next_rate(passing, failing, rate)
        if floor is not None and rate < floor * FLOOR_MARGIN:
            lowest = floor * FLOOR_MARGIN
            if (failing is not None and failing <= lowest) or lowest > search.max_qps:
                logger.warning(
                    "no rate passed down to %.4g queries/s, the lowest at which a run issues its minimum queries "
                    "before max_duration_s (raise max_duration_s to probe lower rates)",
                    lowest,
                )
                return outcome(passing, STOP_NONE_PASSED)
            rate = lowest  # the lowest rate a run can be VALID at: probe it rather than an impossible one
        if rate < search.min_qps:
            return outcome(None, STOP_NONE_PASSED)
        if rate > search.max_qps:
            if passing is not None and passing >= search.max_qps:
                return outcome(passing, STOP_CEILING)
            rate = search.max_qps
