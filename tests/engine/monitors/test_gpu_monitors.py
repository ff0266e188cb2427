"""GPU monitors against a fake NVML device (runs without a GPU), and their notes when NVML is absent."""

from __future__ import annotations

import pytest
import torch
from fake_gpu import FakeGpu

from mlperf_track import metrics as m
from mlperf_track.engine.clock import FakeClock
from mlperf_track.engine.monitors import (
    CudaAllocatorMonitor,
    GpuEnergyMonitor,
    GpuProcessMemoryMonitor,
    GpuUtilizationMonitor,
    Monitor,
    Window,
    default_monitors,
)
from mlperf_track.engine.monitors.nvml import NvmlUnavailableError, nvml_error_types, open_nvml_device


def test_energy_counter_over_the_window() -> None:
    gpu, clock = FakeGpu(), FakeClock()
    monitor = GpuEnergyMonitor(counters=lambda: gpu, clock=clock)
    monitor.start()
    clock.advance(2.0)
    gpu.energy_mj += 500_000  # 500 J in 2 s
    reading = monitor.stop(Window(seconds=2.0, samples=100))
    assert reading.metrics == {m.GPU_POWER_MEAN: pytest.approx(250.0), m.GPU_ENERGY_PER_SAMPLE: pytest.approx(5.0)}
    assert reading.tags["energy.gpu_source"] == "nvml_energy_counter"
    assert "whole GPU" in reading.tags["energy.gpu_scope"]


def test_short_window_leaves_energy_out() -> None:
    gpu, clock = FakeGpu(), FakeClock()
    monitor = GpuEnergyMonitor(counters=lambda: gpu, clock=clock)
    monitor.start()
    clock.advance(0.3)
    gpu.energy_mj += 100_000
    reading = monitor.stop(Window(seconds=0.3, samples=10))
    assert reading.metrics == {}
    assert "min_time_s" in reading.notes[m.GPU_ENERGY_PER_SAMPLE]


def test_power_sampling_fallback() -> None:
    gpu, clock = FakeGpu(energy=False), FakeClock()
    monitor = GpuEnergyMonitor(counters=lambda: gpu, clock=clock)
    monitor.start()
    for _ in range(4):
        clock.advance(0.5)
        monitor.sample()
    reading = monitor.stop(Window(seconds=2.0, samples=50))
    assert reading.tags["energy.gpu_source"] == "nvml_power_sampling"
    assert reading.metrics[m.GPU_POWER_MEAN] == pytest.approx(100.0)
    assert reading.metrics[m.GPU_ENERGY_PER_SAMPLE] == pytest.approx(200.0 / 50)


def test_utilization_is_the_mean_of_samples() -> None:
    gpu = FakeGpu()
    gpu.utilization = [0.0, 60.0, 90.0]  # the first is read by start() as an availability check
    monitor = GpuUtilizationMonitor(counters=lambda: gpu)
    monitor.start()
    monitor.sample()
    reading = monitor.stop(Window(seconds=1.0, samples=1))
    assert reading.metrics[m.GPU_UTILIZATION] == pytest.approx(75.0)


def test_process_memory_peak_and_missing_process() -> None:
    gpu = FakeGpu()
    gpu.memory = {1234: 512 * 1024**2}
    monitor = GpuProcessMemoryMonitor(counters=lambda: gpu, pid=1234)
    monitor.start()
    gpu.memory[1234] = 1024 * 1024**2
    monitor.sample()
    gpu.memory[1234] = 256 * 1024**2
    assert monitor.stop(Window(seconds=1.0, samples=1)).metrics[m.GPU_PROCESS_PEAK] == 1024.0
    hidden = GpuProcessMemoryMonitor(counters=lambda: gpu, pid=99)
    hidden.start()
    reading = hidden.stop(Window(seconds=1.0, samples=1))
    assert reading.metrics == {} and "pid 99" in reading.notes[m.GPU_PROCESS_PEAK]


def _unavailable() -> FakeGpu:
    raise NvmlUnavailableError("pynvml is not installed: pip install 'mlperf-track[gpu]'")


@pytest.mark.parametrize(
    "monitor",
    [
        GpuEnergyMonitor(counters=_unavailable),
        GpuUtilizationMonitor(counters=_unavailable),
        GpuProcessMemoryMonitor(counters=_unavailable),
    ],
    ids=lambda monitor: monitor.name,
)
def test_absent_nvml_gives_notes_not_zeros(monitor: Monitor) -> None:
    monitor.start()
    reading = monitor.stop(Window(seconds=5.0, samples=10))
    assert reading.metrics == {}
    assert set(reading.notes) == set(monitor.metric_keys)
    assert all("mlperf-track[gpu]" in note for note in reading.notes.values())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
def test_no_gpu_paths() -> None:
    with pytest.raises(NvmlUnavailableError, match="no CUDA GPU"):
        open_nvml_device()
    allocator = CudaAllocatorMonitor()
    allocator.start()
    reading = allocator.stop(Window(seconds=1.0, samples=1))
    assert reading.metrics == {} and "no CUDA GPU" in reading.notes[m.GPU_PEAK_ALLOCATED]
    monitor = GpuEnergyMonitor()
    monitor.start()
    assert "no CUDA GPU" in monitor.stop(Window(seconds=5.0, samples=1)).notes[m.GPU_POWER_MEAN]


def test_default_monitors_by_device() -> None:
    cpu = {monitor.name for monitor in default_monitors("cpu")}
    cuda = {monitor.name for monitor in default_monitors("cuda")}
    assert cpu == {"cpu_utilization", "cpu_rss", "cpu_energy"}
    assert cuda - cpu == {"cuda_allocator", "gpu_process_memory", "gpu_device_memory", "gpu_utilization", "gpu_energy"}
    assert nvml_error_types()
