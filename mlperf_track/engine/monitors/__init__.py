"""Monitors that run beside the timed loop: CPU, memory, GPU and energy.

One module per monitor; :func:`default_monitors` is the one place that says which run on which device.
GPU monitors import pynvml lazily, on :meth:`Monitor.start`. The names below are imported on first use, so
importing one light module of this package (:mod:`.nvml`, which the run-context provider uses) loads neither
torch nor psutil.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlperf_track.lazy import lazy_exports

if TYPE_CHECKING:
    from mlperf_track.engine.monitors.base import BYTES_PER_MB, Monitor, MonitorGroup, MonitorReading, Window
    from mlperf_track.engine.monitors.cpu import CpuUtilizationMonitor
    from mlperf_track.engine.monitors.cuda_memory import CudaAllocatorMonitor
    from mlperf_track.engine.monitors.gpu_device_memory import GpuDeviceMemoryMonitor
    from mlperf_track.engine.monitors.gpu_energy import GpuEnergyMonitor
    from mlperf_track.engine.monitors.gpu_process_memory import GpuProcessMemoryMonitor
    from mlperf_track.engine.monitors.gpu_utilization import GpuUtilizationMonitor
    from mlperf_track.engine.monitors.rapl import RaplEnergyMonitor
    from mlperf_track.engine.monitors.rss import RssPeakMonitor

_EXPORTS = {
    "BYTES_PER_MB": "base",
    "Monitor": "base",
    "MonitorGroup": "base",
    "MonitorReading": "base",
    "Window": "base",
    "CpuUtilizationMonitor": "cpu",
    "CudaAllocatorMonitor": "cuda_memory",
    "GpuDeviceMemoryMonitor": "gpu_device_memory",
    "GpuEnergyMonitor": "gpu_energy",
    "GpuProcessMemoryMonitor": "gpu_process_memory",
    "GpuUtilizationMonitor": "gpu_utilization",
    "RaplEnergyMonitor": "rapl",
    "RssPeakMonitor": "rss",
}

__all__ = [
    "BYTES_PER_MB",
    "CpuUtilizationMonitor",
    "CudaAllocatorMonitor",
    "GpuDeviceMemoryMonitor",
    "GpuEnergyMonitor",
    "GpuProcessMemoryMonitor",
    "GpuUtilizationMonitor",
    "Monitor",
    "MonitorGroup",
    "MonitorReading",
    "RaplEnergyMonitor",
    "RssPeakMonitor",
    "Window",
    "default_monitors",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


def default_monitors(device: str, *, gpu_baseline_bytes: int | None = None) -> list[Monitor]:
    """The monitors for a case on ``device``: CPU ones always, GPU ones on CUDA.

    Args:
        device: ``cpu`` or ``cuda``.
        gpu_baseline_bytes: The device's used memory before the case (see
            :func:`~mlperf_track.engine.monitors.gpu_device_memory.device_used_reader`); without it
            ``memory/gpu_device_delta_peak_mb`` is left out with a note.
    """
    from mlperf_track.engine.device import is_cuda
    from mlperf_track.engine.monitors.cpu import CpuUtilizationMonitor
    from mlperf_track.engine.monitors.cuda_memory import CudaAllocatorMonitor
    from mlperf_track.engine.monitors.gpu_device_memory import GpuDeviceMemoryMonitor
    from mlperf_track.engine.monitors.gpu_energy import GpuEnergyMonitor
    from mlperf_track.engine.monitors.gpu_process_memory import GpuProcessMemoryMonitor
    from mlperf_track.engine.monitors.gpu_utilization import GpuUtilizationMonitor
    from mlperf_track.engine.monitors.rapl import RaplEnergyMonitor
    from mlperf_track.engine.monitors.rss import RssPeakMonitor

    monitors: list[Monitor] = [CpuUtilizationMonitor(), RssPeakMonitor(), RaplEnergyMonitor()]
    if is_cuda(device):
        monitors += [
            CudaAllocatorMonitor(),
            GpuProcessMemoryMonitor(),
            GpuDeviceMemoryMonitor(baseline_bytes=gpu_baseline_bytes),
            GpuUtilizationMonitor(),
            GpuEnergyMonitor(),
        ]
    return monitors
