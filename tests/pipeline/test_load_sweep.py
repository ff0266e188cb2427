"""Load sweeps on a real model in this process (tinycnn), with limits, failures and background load."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlperf_track import metrics as m
from mlperf_track.engine.load.background import BackgroundLoad
from mlperf_track.engine.load.config import DeploymentConfig, LoadConfig
from mlperf_track.engine.load.resources import ResourceLimits
from mlperf_track.engine.load.search import SearchConfig
from mlperf_track.errors import DeviceError
from mlperf_track.pipeline.load_sweep import LoadListener, LoadPlan, LoadPoint, run_load_plan
from mlperf_track.pipeline.load_target import ModelTarget, SyntheticTarget

SHORT = {"min_duration_s": 0.3, "min_query_count": 40, "early_stopping": False}


class _Recorder(LoadListener):
    def __init__(self) -> None:
        self.points: list[LoadPoint] = []

    def point_finished(self, point: LoadPoint) -> None:
        self.points.append(point)


def _tinycnn(tmp_path: Path) -> ModelTarget:
    return ModelTarget("tinycnn", image_size=16, cache_dir=tmp_path / "cache")


def test_single_stream_on_tinycnn_in_process(tmp_path: Path) -> None:
    plan = LoadPlan(_tinycnn(tmp_path), LoadConfig("single_stream", **SHORT), limits=ResourceLimits(num_threads=1))
    recorder = _Recorder()
    outcome = run_load_plan(plan, recorder)
    assert [point.label for point in recorder.points] == ["single_stream"]
    result = outcome.results[0]
    assert result.metrics[m.LOAD_COMPLETED] >= 40 and result.metrics[m.LOAD_ERRORS] == 0
    assert result.metrics[m.LOAD_COMPUTE_P50] > 0
    assert result.tags["load.target"] == "in_process" and result.tags["load.num_threads"] == "1"
    assert result.tags["precision.cudnn_allow_tf32"] in ("False", "false")


def test_server_rates_with_dynamic_batching_on_tinycnn(tmp_path: Path) -> None:
    config = LoadConfig("server", target_qps=1.0, latency_bound_ms=500.0, **SHORT)
    deployment = DeploymentConfig(workers=1, max_batch_size=4, max_queue_delay_ms=1.0)
    outcome = run_load_plan(LoadPlan(_tinycnn(tmp_path), config, deployment, rates=(50.0, 100.0)))
    assert [point.label for point in outcome.points] == ["server@50qps", "server@100qps"]
    for result in outcome.results:
        assert result.metrics[m.LOAD_COMPLETED] == result.metrics[m.LOAD_ISSUED]
        assert result.config.target_qps in (50.0, 100.0)
        assert result.metrics[m.LOAD_OFFERED_QPS] == pytest.approx(result.config.target_qps, rel=0.35)


def test_max_qps_search_of_a_synthetic_model() -> None:
    # 2 ms per query, one worker: capacity 500 q/s; a 100 ms p99 bound holds up to roughly 450 q/s (M/D/1).
    config = LoadConfig("server", target_qps=1.0, latency_bound_ms=100.0, min_duration_s=0.5)
    plan = LoadPlan(SyntheticTarget(2.0), config, search=SearchConfig(tolerance=0.25, max_probes=6))
    outcome = run_load_plan(plan)
    search = outcome.search
    assert search is not None and search.probes
    assert len(outcome.points) == len(search.probes)  # one point per probe (calibration is not a point)
    # A finite run can pass just above capacity: over D seconds at rate r > 500 the backlog adds about
    # (r / 500 - 1) * D of queueing, so a 0.1 s bound over 0.5 s admits rates up to 500 * (1 + 0.1 / 0.5).
    assert search.max_qps is not None and 50 < search.max_qps < 500 * (1 + 0.1 / 0.5)
    assert all(probe.result is not None for probe in search.probes)
    assert search.best is not None and search.best.result is not None and search.best.result.valid


def test_a_point_killed_by_its_memory_limit_is_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    config = LoadConfig("server", target_qps=1.0, latency_bound_ms=500.0, **SHORT)
    plan = LoadPlan(
        ModelTarget("resnet18", image_size=64, cache_dir=tmp_path / "cache"),
        config,
        DeploymentConfig(max_batch_size=64),
        limits=ResourceLimits(memory_limit_mb=700),  # below what torch and a resnet18 batch of 64 need
        rates=(10.0, 20.0),
        isolated_timeout_s=300,
    )
    recorder = _Recorder()
    outcome = run_load_plan(plan, recorder)
    assert len(recorder.points) == 2
    for point in outcome.points:
        assert point.result is None and point.error is not None
        assert "700 MiB" in str(point.error)


def test_background_load_adds_loaded_twins_with_their_slowdown() -> None:
    config = LoadConfig("concurrency", concurrency=2, min_duration_s=0.3, min_query_count=30, early_stopping=False)
    plan = LoadPlan(SyntheticTarget(2.0), config, DeploymentConfig(workers=1), background=BackgroundLoad(cpu_workers=1))
    outcome = run_load_plan(plan)
    assert [(point.label, point.loaded) for point in outcome.points] == [
        ("concurrency-c2", False),
        ("concurrency-c2+load", True),
    ]
    loaded = outcome.points[1].result
    assert loaded is not None
    assert loaded.metrics[m.LOAD_P99_SLOWDOWN] > 0 and loaded.metrics[m.LOAD_QPS_RATIO] > 0


def test_gpu_limits_without_a_gpu_are_refused_before_anything_runs(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("checks the refusal without a GPU")
    recorder = _Recorder()
    plan = LoadPlan(_tinycnn(tmp_path), LoadConfig("single_stream"), limits=ResourceLimits(gpu_memory_fraction=0.5))
    with pytest.raises(DeviceError):
        run_load_plan(plan, recorder)
    assert recorder.points == []
