"""This process's GPU memory as the driver sees it (NVML), sampled during the timed window.

Unlike the torch allocator's peaks this includes the CUDA context, cuDNN/cuBLAS workspaces and memory of
other libraries in the process (ONNX Runtime, TensorRT). NVML lists processes by host PID: inside a
container with its own PID namespace this process may not be found, and the metric is left out.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from mlperf_track import metrics as m
from mlperf_track.engine.monitors.base import BYTES_PER_MB, Monitor, MonitorReading, Window
from mlperf_track.engine.monitors.nvml import GpuCounters, NvmlUnavailableError, nvml_error_types, open_nvml_device


class GpuProcessMemoryMonitor(Monitor):
    """Peak of NVML's ``usedGpuMemory`` for this process.

    Args:
        counters: Returns the GPU's NVML counters (default: torch's current device).
        pid: The process to look for (default: this one).
    """

    name = "gpu_process_memory"
    metric_keys = (m.GPU_PROCESS_PEAK,)
    samples = True

    def __init__(self, counters: Callable[[], GpuCounters] = open_nvml_device, pid: int | None = None) -> None:
        self.counters = counters
        self.pid = os.getpid() if pid is None else pid
        self._gpu: GpuCounters | None = None
        self._reason: str | None = None
        self._peak: int | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Open NVML and take the first sample."""
        self._gpu, self._reason, self._peak = None, None, None
        try:
            self._gpu = self.counters()
            self.sample()
        except NvmlUnavailableError as error:
            self._gpu, self._reason = None, str(error)
        except nvml_error_types() as error:
            self._gpu, self._reason = None, f"NVML does not list per-process memory on this GPU ({error})"

    def sample(self) -> None:
        """Record this process's current GPU memory."""
        if self._gpu is None:
            return
        used = self._gpu.process_memory_bytes(self.pid)
        if used is not None:
            with self._lock:
                self._peak = used if self._peak is None else max(self._peak, used)

    def stop(self, window: Window) -> MonitorReading:
        """The peak in MiB."""
        if self._gpu is None:
            return self.absent(self._reason or "the monitor was not started")
        self.sample()
        if self._peak is None:
            return self.absent(
                f"NVML does not list this process (pid {self.pid}) with a memory figure "
                "(a container PID namespace, MIG, or a driver without per-process accounting)"
            )
        return MonitorReading(metrics={m.GPU_PROCESS_PEAK: self._peak / BYTES_PER_MB})
