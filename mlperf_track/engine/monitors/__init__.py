"""Monitors that run beside the timed loop: CPU, memory, GPU and energy.

One module per monitor; :func:`default_monitors` is the one place that says which run on which device.
GPU monitors import pynvml lazily, on :meth:`Monitor.start`.
"""

from __future__ import annotations

from mlperf_track.engine.device import is_cuda
from mlperf_track.engine.monitors.base import BYTES_PER_MB, Monitor, MonitorGroup, MonitorReading, Window
from mlperf_track.engine.monitors.cpu import CpuUtilizationMonitor
from mlperf_track.engine.monitors.cuda_memory import CudaAllocatorMonitor
from mlperf_track.engine.monitors.gpu_energy import GpuEnergyMonitor
from mlperf_track.engine.monitors.gpu_process_memory import GpuProcessMemoryMonitor
from mlperf_track.engine.monitors.gpu_utilization import GpuUtilizationMonitor
from mlperf_track.engine.monitors.rapl import RaplEnergyMonitor
from mlperf_track.engine.monitors.rss import RssPeakMonitor

__all__ = [
    "BYTES_PER_MB",
    "CpuUtilizationMonitor",
    "CudaAllocatorMonitor",
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


def default_monitors(device: str) -> list[Monitor]:
    """The monitors for a case on ``device``: CPU ones always, GPU ones on CUDA."""
    monitors: list[Monitor] = [CpuUtilizationMonitor(), RssPeakMonitor(), RaplEnergyMonitor()]
    if is_cuda(device):
        monitors += [CudaAllocatorMonitor(), GpuProcessMemoryMonitor(), GpuUtilizationMonitor(), GpuEnergyMonitor()]
    return monitors
