"""Scheduling, batching and validity in virtual time: a FakeClock that the synthetic model advances."""

from __future__ import annotations

import numpy as np
import pytest

from mlperf_track import metrics as m
from mlperf_track.engine.clock import FakeClock
from mlperf_track.engine.load.config import DeploymentConfig, LoadConfig
from mlperf_track.engine.load.result import LoadResult
from mlperf_track.engine.load.run import run_load
from mlperf_track.engine.load.synthetic import SyntheticModel, md1_mean_queue_delay


def _run(config: LoadConfig, deployment: DeploymentConfig, base_ms: float = 10.0, per_sample_ms: float = 0.0,
         fail_every: int = 0) -> tuple[LoadResult, SyntheticModel]:  # fmt: skip
    clock = FakeClock()
    model = SyntheticModel(base_ms, per_sample_ms, clock=clock, fail_every=fail_every)
    return run_load(model, config, deployment, clock=clock, simulated=True, warmup_calls=0), model


def _columns(result: LoadResult) -> dict[str, np.ndarray]:
    names = ("arrival_ms", "issued_ms", "start_ms", "end_ms", "samples", "client", "batch")
    return {name: np.asarray(result.column(name), dtype=np.float64) for name in names}


def test_one_worker_serves_fifo_without_overlap() -> None:
    config = LoadConfig("server", target_qps=60.0, latency_bound_ms=100.0, min_duration_s=5.0, seed=3)
    result, _ = _run(config, DeploymentConfig())
    c = _columns(result)
    assert set(result.column("status")) == {"ok"}
    assert np.all(c["start_ms"] >= c["arrival_ms"])
    assert np.allclose(c["end_ms"] - c["start_ms"], 10.0)  # the service time, exactly
    order = np.argsort(c["arrival_ms"], kind="stable")
    starts = c["start_ms"][order]
    assert np.all(np.diff(starts) >= 10.0 - 1e-9)  # one at a time, in arrival order
    assert result.metrics[m.LOAD_COMPUTE_P99] == pytest.approx(10.0)
    assert result.metrics[m.LOAD_LATENCY_P99] == pytest.approx(
        result.metrics[m.LOAD_COMPUTE_P99] + result.metrics[m.LOAD_QUEUE_P99], rel=0.5
    )


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_md1_mean_queueing_delay_matches_theory(rho: float) -> None:
    service_s = 0.010
    rate = rho / service_s
    config = LoadConfig("server", target_qps=rate, latency_bound_ms=1000.0, min_duration_s=0.0,
                        min_query_count=60_000, seed=11)  # fmt: skip
    result, _ = _run(config, DeploymentConfig())
    theory_ms = md1_mean_queue_delay(rate, service_s) * 1e3
    assert result.metrics[m.LOAD_QUEUE_MEAN] == pytest.approx(theory_ms, rel=0.05)


def test_dynamic_batching_respects_the_limit_and_the_delay() -> None:
    config = LoadConfig("server", target_qps=400.0, latency_bound_ms=200.0, min_duration_s=3.0, seed=1)
    deployment = DeploymentConfig(workers=1, max_batch_size=8, max_queue_delay_ms=2.0)
    result, model = _run(config, deployment, base_ms=4.0, per_sample_ms=0.5)
    assert max(model.batch_sizes) <= 8
    assert result.metrics[m.LOAD_BATCH_SIZE_MEAN] > 1.5
    assert result.valid, result.invalid_reasons
    # Without batching the same load overloads one worker (400 q/s x 4.5 ms > 1): the deployment falls behind.
    unbatched, _ = _run(config, DeploymentConfig(), base_ms=4.0, per_sample_ms=0.5)
    assert not unbatched.valid
    assert unbatched.metrics[m.LOAD_LATENCY_P99] > 10 * result.metrics[m.LOAD_LATENCY_P99]


def test_a_lone_request_waits_exactly_the_queue_delay() -> None:
    config = LoadConfig("single_stream", min_duration_s=0.5, min_query_count=10)
    result, _ = _run(config, DeploymentConfig(max_batch_size=4, max_queue_delay_ms=3.0), base_ms=1.0)
    assert result.metrics[m.LOAD_QUEUE_P50] == pytest.approx(3.0)
    assert result.metrics[m.LOAD_LATENCY_P50] == pytest.approx(4.0)


def test_single_stream_issues_each_query_when_the_last_completes() -> None:
    config = LoadConfig("single_stream", min_duration_s=1.0, min_query_count=64)
    result, _ = _run(config, DeploymentConfig(), base_ms=5.0)
    c = _columns(result)
    assert np.allclose(c["arrival_ms"][1:], c["end_ms"][:-1])
    # LoadGen's rule: at least min queries, and the last one issued at or after min_duration.
    assert len(result.queries) == 201 and c["arrival_ms"][-1] == pytest.approx(1000.0)
    assert result.valid and result.metrics[m.LOAD_ACHIEVED_QPS] == pytest.approx(200.0)
    assert result.metrics[m.LOAD_EARLY_STOPPING_LATENCY] == pytest.approx(5.0)


def test_concurrency_saturates_the_workers() -> None:
    config = LoadConfig("concurrency", concurrency=6, min_duration_s=1.0, min_query_count=100)
    result, _ = _run(config, DeploymentConfig(workers=2), base_ms=10.0)
    assert result.metrics[m.LOAD_ACHIEVED_QPS] == pytest.approx(200.0, rel=0.02)  # 2 workers / 10 ms
    assert result.metrics[m.LOAD_QUEUE_MEAN] == pytest.approx(20.0, rel=0.05)  # 6 clients, 2 served at a time
    assert set(result.column("client")) == set(range(6))


def test_multi_stream_queries_larger_than_a_batch_are_split_and_complete_together() -> None:
    config = LoadConfig("multi_stream", samples_per_query=8, min_duration_s=0.5, min_query_count=20)
    result, model = _run(config, DeploymentConfig(workers=2, max_batch_size=4), base_ms=2.0, per_sample_ms=1.0)
    assert set(model.batch_sizes) == {4}
    # Two parts of 4 samples run in parallel on the two workers: a query takes one 6 ms call.
    assert result.metrics[m.LOAD_LATENCY_P50] == pytest.approx(6.0)
    assert result.metrics[m.LOAD_SAMPLES_PER_S] == pytest.approx(8 / 0.006, rel=0.01)


def test_offline_throughput_is_workers_times_batch_over_service_time() -> None:
    config = LoadConfig("offline", min_duration_s=0.0, min_query_count=1000)
    result, _ = _run(config, DeploymentConfig(workers=2, max_batch_size=10), base_ms=4.0, per_sample_ms=0.1)
    assert result.metrics[m.LOAD_SAMPLES_PER_S] == pytest.approx(2 * 10 / 0.005, rel=0.01)
    assert m.LOAD_OFFERED_QPS not in result.metrics and m.LOAD_OFFERED_QPS in result.notes


def test_failures_are_counted_and_make_the_run_invalid() -> None:
    config = LoadConfig("single_stream", min_duration_s=0.2, min_query_count=100)
    result, _ = _run(config, DeploymentConfig(), base_ms=1.0, fail_every=10)
    issued = result.metrics[m.LOAD_ISSUED]
    assert result.metrics[m.LOAD_ERRORS] == issued // 10 > 0
    assert result.metrics[m.LOAD_COMPLETED] == issued - issued // 10
    assert any("failed or were dropped" in reason for reason in result.invalid_reasons)
    assert "synthetic failure" in result.tags["load.first_error.error"]


def test_a_full_queue_drops_requests() -> None:
    config = LoadConfig("server", target_qps=500.0, latency_bound_ms=1000.0, min_duration_s=1.0)
    result, _ = _run(config, DeploymentConfig(max_queue_size=5), base_ms=10.0)
    assert result.metrics[m.LOAD_DROPPED] > 0
    assert result.metrics[m.LOAD_DROPPED] + result.metrics[m.LOAD_COMPLETED] == result.metrics[m.LOAD_ISSUED]
    assert not result.valid


def test_the_time_cap_drops_what_is_still_queued() -> None:
    config = LoadConfig("offline", min_duration_s=0.0, min_query_count=100, max_duration_s=0.5, drain_timeout_s=0.5)
    result, _ = _run(config, DeploymentConfig(), base_ms=50.0)  # 100 x 50 ms = 5 s of work, 1 s allowed
    assert 0 < result.metrics[m.LOAD_COMPLETED] < 100
    assert result.metrics[m.LOAD_DROPPED] == 100 - result.metrics[m.LOAD_COMPLETED]
    assert "time cap" in result.notes["dropped"]


def test_same_seed_same_run() -> None:
    config = LoadConfig("server", target_qps=80.0, latency_bound_ms=100.0, min_duration_s=2.0, seed=5)
    first, _ = _run(config, DeploymentConfig(max_batch_size=4, max_queue_delay_ms=1.0))
    second, _ = _run(config, DeploymentConfig(max_batch_size=4, max_queue_delay_ms=1.0))
    assert first.queries == second.queries
    other, _ = _run(LoadConfig("server", target_qps=80.0, latency_bound_ms=100.0, min_duration_s=2.0, seed=6),
                    DeploymentConfig(max_batch_size=4, max_queue_delay_ms=1.0))  # fmt: skip
    assert other.queries != first.queries


def test_result_round_trips_through_json(tmp_path: object) -> None:
    config = LoadConfig("concurrency", concurrency=2, min_duration_s=0.1, min_query_count=10)
    result, _ = _run(config, DeploymentConfig(workers=2), base_ms=1.0)
    again = LoadResult.from_dict(__import__("json").loads(result.to_json()))
    assert again == result
