"""The max_qps bracketing search, against probes whose pass/fail is known."""

from __future__ import annotations

import pytest

from mlperf_track import metrics as m
from mlperf_track.engine.load.config import DeploymentConfig, LoadConfig
from mlperf_track.engine.load.result import LoadResult
from mlperf_track.engine.load.search import (
    STOP_CEILING,
    STOP_CONVERGED,
    STOP_MAX_PROBES,
    STOP_NONE_PASSED,
    SearchConfig,
    find_max_qps,
)
from mlperf_track.errors import ConfigError


def _probe(capacity: float, calls: list[float] | None = None):  # type: ignore[no-untyped-def]
    def probe(rate: float) -> LoadResult:
        if calls is not None:
            calls.append(rate)
        config = LoadConfig("server", target_qps=rate, latency_bound_ms=10.0)
        reasons = () if rate <= capacity else ("p99 over the bound",)
        return LoadResult(config, DeploymentConfig(), {m.LOAD_OFFERED_QPS: rate * 0.98}, invalid_reasons=reasons)

    return probe


@pytest.mark.parametrize(("start", "capacity"), [(10.0, 123.4), (1000.0, 123.4), (123.4, 123.4), (5.0, 7.0)])
def test_converges_within_the_tolerance_below_the_capacity(start: float, capacity: float) -> None:
    outcome = find_max_qps(_probe(capacity), SearchConfig(start_qps=start, tolerance=0.02))
    assert outcome.stop_reason == STOP_CONVERGED
    assert outcome.max_qps is not None and outcome.lowest_failing is not None
    assert outcome.max_qps <= capacity < outcome.lowest_failing
    assert outcome.lowest_failing - outcome.max_qps <= 0.02 * outcome.max_qps
    assert outcome.best is not None and outcome.best.rate == outcome.max_qps
    assert outcome.max_scheduled_qps == pytest.approx(outcome.max_qps * 0.98)


def test_every_probe_is_kept_in_order() -> None:
    calls: list[float] = []
    outcome = find_max_qps(_probe(50.0, calls), SearchConfig(start_qps=40.0, tolerance=0.05))
    assert [probe.rate for probe in outcome.probes] == calls
    assert calls[:2] == [40.0, 80.0]  # double until a rate fails, then bisect


def test_no_rate_passes() -> None:
    outcome = find_max_qps(_probe(0.01), SearchConfig(start_qps=10.0, min_qps=1.0))
    assert outcome.max_qps is None and outcome.stop_reason == STOP_NONE_PASSED
    assert min(probe.rate for probe in outcome.probes) >= 1.0


def test_the_ceiling_stops_the_doubling() -> None:
    outcome = find_max_qps(_probe(1e9), SearchConfig(start_qps=10.0, max_qps=100.0))
    assert outcome.stop_reason == STOP_CEILING and outcome.max_qps == 100.0
    assert max(probe.rate for probe in outcome.probes) == 100.0


def test_max_probes_bounds_the_search() -> None:
    outcome = find_max_qps(_probe(123.4), SearchConfig(start_qps=1.0, tolerance=1e-6, max_probes=5))
    assert len(outcome.probes) == 5 and outcome.stop_reason == STOP_MAX_PROBES


def test_a_probe_that_raises_is_a_failing_rate_and_the_search_goes_on() -> None:
    def probe(rate: float) -> LoadResult:
        if rate > 60:
            raise MemoryError("killed by the memory limit")
        return _probe(1e9)(rate)

    outcome = find_max_qps(probe, SearchConfig(start_qps=40.0, tolerance=0.05))
    assert outcome.max_qps is not None and 57 <= outcome.max_qps <= 60
    failed = [p for p in outcome.probes if p.error is not None]
    assert failed and isinstance(failed[0].error, MemoryError) and not failed[0].passed


def test_bad_search_settings() -> None:
    with pytest.raises(ConfigError, match="tolerance"):
        SearchConfig(start_qps=1.0, tolerance=0.0)
    with pytest.raises(ConfigError, match="start_qps"):
        SearchConfig(start_qps=-1.0)
    with pytest.raises(ValueError, match="start_qps"):
        find_max_qps(_probe(1.0), SearchConfig())
