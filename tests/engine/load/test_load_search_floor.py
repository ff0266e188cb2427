"""The max_qps search never probes a rate whose run cannot be VALID for want of queries (the no-batching bug).

Regression: a search halving from a failing start reached rates at which the seeded Poisson schedule is cut at
``max_duration_s`` before LoadGen's minimum query count (459 at p99), read those INVALID runs as "too fast" and
ended with no rate at all, while a schedulable rate under the bound passed.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from mlperf_track.engine.clock import FakeClock
from mlperf_track.engine.load.config import LoadConfig
from mlperf_track.engine.load.queries import lowest_schedulable_qps, poisson_schedule
from mlperf_track.engine.load.result import LoadResult
from mlperf_track.engine.load.run import run_load
from mlperf_track.engine.load.search import (
    FLOOR_MARGIN,
    STOP_CONVERGED,
    STOP_NONE_PASSED,
    SearchConfig,
    find_max_qps,
)
from mlperf_track.engine.load.synthetic import SyntheticModel

BASE = LoadConfig("server", target_qps=1.0, latency_bound_ms=70.0, min_duration_s=1.0, max_duration_s=30.0, seed=0)


def _simulated_probe(service_ms: float, config: LoadConfig, seen: list[LoadResult]):  # type: ignore[no-untyped-def]
    def probe(rate: float) -> LoadResult:
        clock = FakeClock()
        model = SyntheticModel(service_ms, clock=clock)
        result = run_load(model, replace(config, target_qps=rate), clock=clock, simulated=True, warmup_calls=0)
        seen.append(result)
        return result

    return probe


@pytest.mark.parametrize("seed", [0, 5])
def test_the_floor_is_the_lowest_rate_whose_schedule_meets_the_minimums(seed: int) -> None:
    config = replace(BASE, seed=seed)
    floor = lowest_schedulable_qps(config)
    assert floor is not None
    needed = config.resolved_min_queries()
    at_floor = poisson_schedule(replace(config, target_qps=floor))
    below = poisson_schedule(replace(config, target_qps=floor * 0.995))
    assert len(at_floor) >= needed and at_floor[-1] <= config.max_duration_s * 1e9
    assert len(below) < needed


def test_no_floor_when_max_queries_is_under_the_minimum() -> None:
    assert lowest_schedulable_qps(replace(BASE, max_queries=100)) is None
    with pytest.raises(ValueError, match="server"):
        lowest_schedulable_qps(LoadConfig("offline"))


def test_a_search_halving_past_the_floor_probes_the_floor_and_finds_max_qps() -> None:
    # 20 ms deterministic service, 70 ms bound: 64 and 32 q/s fail, 16 q/s is under the floor (16.9 q/s in 30 s).
    seen: list[LoadResult] = []
    outcome = find_max_qps(_simulated_probe(20.0, BASE, seen), SearchConfig(start_qps=64.0, tolerance=0.1))
    floor = lowest_schedulable_qps(BASE)
    assert floor is not None and outcome.floor_qps == pytest.approx(floor)
    assert outcome.stop_reason == STOP_CONVERGED and outcome.max_qps is not None
    assert floor <= outcome.max_qps < 32.0
    assert min(probe.rate for probe in outcome.probes) == pytest.approx(floor * FLOOR_MARGIN)
    for result in seen:  # every probe issued enough queries: its verdict is about latency
        assert not any("queries issued" in reason for reason in result.invalid_reasons), result.invalid_reasons


def test_a_failing_floor_ends_the_search_there() -> None:
    seen: list[LoadResult] = []
    tight = replace(BASE, latency_bound_ms=30.0)  # 20 ms service: the first queue over 10 ms breaks the bound
    outcome = find_max_qps(_simulated_probe(20.0, tight, seen), SearchConfig(start_qps=64.0, min_qps=0.1))
    floor = lowest_schedulable_qps(tight)
    assert outcome.stop_reason == STOP_NONE_PASSED and outcome.max_qps is None
    assert floor is not None and min(probe.rate for probe in outcome.probes) == pytest.approx(floor * FLOOR_MARGIN)
    assert len(outcome.probes) == 3  # 64, 32, the floor: never the impossible 16, 8, 4, ...


def test_a_start_under_the_floor_moves_up_to_it_and_is_not_a_failing_rate() -> None:
    # A calibration on a busy machine can start under the floor: that run is INVALID for want of queries only.
    seen: list[LoadResult] = []
    outcome = find_max_qps(_simulated_probe(20.0, BASE, seen), SearchConfig(start_qps=8.0, tolerance=0.1))
    floor = lowest_schedulable_qps(BASE)
    assert floor is not None and [probe.rate for probe in outcome.probes][:2] == [
        8.0,
        pytest.approx(floor * FLOOR_MARGIN),
    ]
    assert outcome.stop_reason == STOP_CONVERGED and outcome.max_qps is not None and outcome.max_qps >= floor
    assert outcome.lowest_failing is not None and outcome.lowest_failing > floor  # 8.0 is no failing rate


def test_a_floor_above_the_ceiling_ends_the_search() -> None:
    seen: list[LoadResult] = []
    outcome = find_max_qps(_simulated_probe(20.0, BASE, seen), SearchConfig(start_qps=4.0, max_qps=5.0))
    assert outcome.stop_reason == STOP_NONE_PASSED and len(outcome.probes) == 1
