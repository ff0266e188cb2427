"""The M/D/1 truth check of ``benchmarks/serving.py``: its service trace, M/G/1 formula and replay, in virtual time."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from mlperf_track import metrics as m
from mlperf_track.engine.clock import FakeClock
from mlperf_track.engine.load.config import LoadConfig
from mlperf_track.engine.load.run import run_load
from mlperf_track.engine.load.synthetic import SyntheticModel, md1_mean_queue_delay

SERVING = Path(__file__).resolve().parents[2] / "benchmarks" / "serving.py"


@pytest.fixture(scope="module")
def serving() -> ModuleType:
    spec = importlib.util.spec_from_file_location("serving_benchmark", SERVING)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _config(rate: float, queries: int = 3000) -> LoadConfig:
    return LoadConfig("server", target_qps=rate, latency_bound_ms=1e6, min_duration_s=0.0, min_query_count=queries,
                      max_queries=queries, early_stopping=False, seed=4)  # fmt: skip


def test_mg1_is_md1_for_a_fixed_service_and_grows_with_its_variance(serving: ModuleType) -> None:
    fixed = np.full(100, 10.0)
    assert serving.mg1_mean_queue_delay_ms(50.0, fixed) == pytest.approx(md1_mean_queue_delay(50.0, 0.010) * 1e3)
    jittered = np.tile([8.0, 12.0], 50)  # same mean, more variance: longer waits (Pollaczek-Khinchine)
    assert serving.mg1_mean_queue_delay_ms(50.0, jittered) > serving.mg1_mean_queue_delay_ms(50.0, fixed)


def test_the_trace_of_a_virtual_run_is_exactly_the_service_time(serving: ModuleType) -> None:
    clock = FakeClock()
    result = run_load(SyntheticModel(10.0, clock=clock), _config(70.0), clock=clock, simulated=True, warmup_calls=0)
    trace = serving.service_trace(result)
    assert np.allclose(trace.compute, 10.0) and trace.gap == pytest.approx(0.0)
    assert np.allclose(trace.lag, 0.0) and np.allclose(trace.idle_wake, 0.0)
    assert 0 < trace.idle_wake.size < len(result.queries)  # some arrivals found the worker idle, not all


def test_replaying_the_measured_services_reproduces_the_run(serving: ModuleType) -> None:
    config = _config(60.0)
    services = np.random.default_rng(1).uniform(5.0, 15.0, size=3000)
    clock = FakeClock()
    original = run_load(serving._Replay(services, clock), config, clock=clock, simulated=True, warmup_calls=0)
    trace = serving.service_trace(original)
    assert np.allclose(trace.service, services)
    again_clock = FakeClock()
    again = run_load(serving._Replay(trace.service, again_clock), config, clock=again_clock, simulated=True,
                     warmup_calls=0)  # fmt: skip
    assert again.metrics[m.LOAD_QUEUE_MEAN] == pytest.approx(original.metrics[m.LOAD_QUEUE_MEAN])
    offered = original.metrics[m.LOAD_OFFERED_QPS]
    assert serving.mg1_mean_queue_delay_ms(offered, trace.service) == pytest.approx(
        original.metrics[m.LOAD_QUEUE_MEAN], rel=0.15
    )  # the formula and a 3000-query run agree to the run's sampling error
