"""The CUDA path: events timer, allocator and NVML monitors, peak table (skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch

from mlperf_track import metrics as m
from mlperf_track.engine.compute import compute_metrics
from mlperf_track.engine.measure import measure_callable
from mlperf_track.engine.timing import CudaEventTimer, Stopwatch
from mlperf_track.spec import TimingConfig

pytestmark = pytest.mark.gpu


def test_cuda_events_time_device_work() -> None:
    a = torch.randn(2048, 2048, device="cuda")
    timer = CudaEventTimer()
    small = timer.time_call(lambda: a @ a)
    large = timer.time_call(lambda: [a @ a for _ in range(8)])
    assert 0 < small < large


def test_measure_on_cuda_with_monitors() -> None:
    a = torch.randn(1024, 1024, device="cuda")
    timing = TimingConfig(warmup_iters=3, warmup_s=0.05, min_iters=20, max_iters=10**7, min_time_s=1.1, max_time_s=3.0)
    result = measure_callable(lambda: a @ a, device="cuda", batch_size=4, timing=timing)
    assert result.tags["engine.timer"] == "cuda_event"
    assert result.metrics[m.GPU_PEAK_ALLOCATED] >= 4.0  # a and the 4 MiB product
    for key in (m.GPU_PROCESS_PEAK, m.GPU_UTILIZATION, m.GPU_POWER_MEAN, m.GPU_ENERGY_PER_SAMPLE):
        assert (key in result.metrics) != (key in result.notes)
    assert float(result.tags["engine.window_s"]) >= 1.1


def test_stopwatch_synchronises() -> None:
    a = torch.randn(4096, 4096, device="cuda")
    with Stopwatch(device="cuda") as watch:
        for _ in range(10):
            a @ a
    assert watch.seconds > 10 * 2 * 4096**3 / 2000e12  # slower than any GPU's peak


def test_compute_uses_the_table_or_leaves_the_fraction_out() -> None:
    metrics, notes, tags = compute_metrics(1e9, 1000.0, "cuda", "fp32")
    if m.PEAK_FRACTION in metrics:
        assert tags["compute.peak_source"] == "table" and 0 < metrics[m.PEAK_FRACTION] <= 1
    else:
        assert "no dense datasheet peak" in notes[m.PEAK_FRACTION]


def test_block_timing_on_cuda_beats_per_call_sync_for_small_work() -> None:
    a = torch.randn(64, 64, device="cuda")
    timing = TimingConfig(warmup_iters=10, warmup_s=0.05, min_iters=50, max_iters=10**6, max_time_s=1.0)
    result = measure_callable(lambda: a @ a, device="cuda", batch_size=1, timing=timing)
    assert result.tags["engine.throughput_method"].startswith("block:")
    per_call = result.stats.throughput(1)
    assert result.metrics[m.THROUGHPUT] >= per_call * 0.9  # no sync per call: never much slower
