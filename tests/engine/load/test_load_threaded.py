"""The real deployment: worker threads, a monotonic clock, a synthetic model that spins (short runs)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from mlperf_track import metrics as m
from mlperf_track.engine.clock import FakeClock
from mlperf_track.engine.load.config import DeploymentConfig, LoadConfig
from mlperf_track.engine.load.run import run_load
from mlperf_track.engine.load.synthetic import SyntheticModel, no_op
from mlperf_track.engine.load.threaded import ThreadedDeployment


def test_server_run_records_consistent_timestamps() -> None:
    config = LoadConfig(
        "server", target_qps=100.0, latency_bound_ms=500.0, min_duration_s=0.5, min_query_count=60, early_stopping=False
    )
    result = run_load(SyntheticModel(2.0), config, DeploymentConfig())
    arrival, start, end = (np.asarray(result.column(n), dtype=float) for n in ("arrival_ms", "start_ms", "end_ms"))
    issued = np.asarray(result.column("issued_ms"), dtype=float)
    assert set(result.column("status")) == {"ok"}
    assert np.all(issued >= arrival - 1e-6) and np.all(start >= arrival) and np.all(end - start >= 2.0 - 1e-3)
    assert result.tags["load.executor"] == "threads" and result.tags["load.clock"] == "perf_counter"
    assert result.metrics[m.LOAD_COMPUTE_P50] >= 2.0
    assert m.LOAD_ISSUE_LAG_P99 in result.metrics


def test_dynamic_batching_with_real_threads() -> None:
    config = LoadConfig("offline", min_duration_s=0.0, min_query_count=64, early_stopping=False)
    model = SyntheticModel(1.0, 0.1)
    result = run_load(model, config, DeploymentConfig(workers=2, max_batch_size=8), warmup_calls=0)
    assert result.valid, result.invalid_reasons
    assert max(model.batch_sizes) == 8 and result.metrics[m.LOAD_BATCH_SIZE_MEAN] > 4


def test_concurrency_clients_are_closed_loop() -> None:
    config = LoadConfig("concurrency", concurrency=3, min_duration_s=0.2, min_query_count=30, early_stopping=False)
    result = run_load(SyntheticModel(1.0), config, DeploymentConfig(workers=1), warmup_calls=0)
    assert result.metrics[m.LOAD_COMPLETED] >= 30
    assert sorted(set(result.column("client"))) == [0, 1, 2]
    assert result.metrics[m.LOAD_QUEUE_P50] > 0.5  # three clients share one worker: they queue


def test_failures_are_counted_not_raised() -> None:
    config = LoadConfig("single_stream", min_duration_s=0.0, min_query_count=40, early_stopping=False)
    result = run_load(SyntheticModel(0.1, fail_every=4), config, warmup_calls=0)
    assert result.metrics[m.LOAD_ERRORS] == 10 and not result.valid


def test_a_hung_model_is_cut_off_by_the_drain_timeout() -> None:
    def slow(samples: int) -> None:
        time.sleep(0.3)

    config = LoadConfig("offline", min_duration_s=0.0, min_query_count=20, drain_timeout_s=0.5)
    started = time.monotonic()
    result = run_load(slow, config, warmup_calls=0)
    assert time.monotonic() - started < 3.0
    assert result.metrics[m.LOAD_DROPPED] >= 15 and not result.valid
    assert "time cap" in result.notes["dropped"]


def test_no_op_generator_headroom_far_above_a_model() -> None:
    config = LoadConfig("server", target_qps=2000.0, latency_bound_ms=50.0, min_duration_s=0.5)
    result = run_load(no_op, config, warmup_calls=0)
    assert result.metrics[m.LOAD_COMPLETED] == result.metrics[m.LOAD_ISSUED] >= 900


def test_a_fake_clock_is_refused_by_real_threads() -> None:
    with pytest.raises(ValueError, match="simulate"):
        ThreadedDeployment(no_op, LoadConfig(), DeploymentConfig(), FakeClock())


def test_a_simulated_run_needs_a_clock() -> None:
    with pytest.raises(ValueError, match="clock"):
        run_load(no_op, LoadConfig(), simulated=True)
