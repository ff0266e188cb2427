"""Memory a case added on the GPU, seen at the device level: ``used - baseline``, sampled during the window.

ONNX Runtime and TensorRT allocate outside torch's caching allocator, so the allocator's peaks do not see them,
and NVML's per-process figure is missing where the process runs in its own PID namespace (most containers).
The device's used memory sees everything: the reading is its peak over the window minus a baseline the caller
took before the case started (before the runtime prepared its model, see :func:`device_used_reader`), so it
counts the prepared model, its workspaces and activations, and excludes the CUDA context and whatever was
already there. Other processes on the same GPU change it too (tag ``memory.gpu_device_delta_scope``).

Without a baseline the metric is left out with a note: the window's own start would hide the model's memory.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from mlperf_track import metrics as m
from mlperf_track.engine.monitors.base import BYTES_PER_MB, Monitor, MonitorReading, Window
from mlperf_track.engine.monitors.nvml import NvmlUnavailableError, nvml_error_types, open_nvml_device

_SCOPE = "whole device (every process), minus the memory in use before the case"
#: ``() -> bytes in use on the device``, and the name of its source.
UsedReader = tuple[Callable[[], int], str]


def device_used_reader(device_index: int | None = None) -> UsedReader | None:
    """How to read the device's used memory: NVML when it knows the device, else ``cudaMemGetInfo``.

    Both report the MIG instance's memory on a MIG device. ``None`` without a CUDA GPU.
    """
    import torch

    if not torch.cuda.is_available():
        return None
    index = torch.cuda.current_device() if device_index is None else device_index
    errors: tuple[type[BaseException], ...] = (NvmlUnavailableError, *nvml_error_types())
    try:
        gpu = open_nvml_device(index)
        gpu.used_memory_bytes()
        return gpu.used_memory_bytes, "nvml_memory_info"
    except errors:
        pass

    def used() -> int:
        free, total = torch.cuda.mem_get_info(index)
        return int(total - free)

    return used, "cuda_mem_get_info"


class GpuDeviceMemoryMonitor(Monitor):
    """Peak of the device's used memory during the window, minus ``baseline_bytes``, in MiB.

    Args:
        reader: The used-memory reader (default: :func:`device_used_reader` of torch's current device).
        baseline_bytes: Used memory before the case; ``None`` leaves the metric out with a note.
    """

    name = "gpu_device_memory"
    metric_keys = (m.GPU_DEVICE_DELTA_PEAK,)
    zero_allowed = frozenset(metric_keys)  # a case may add nothing the device reports
    samples = True

    def __init__(self, reader: UsedReader | None = None, baseline_bytes: int | None = None) -> None:
        self.reader = reader
        self.baseline_bytes = baseline_bytes
        self._read: Callable[[], int] | None = None
        self._source = ""
        self._reason: str | None = None
        self._peak = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        """Find the reader and take the first sample."""
        self._read, self._reason, self._peak = None, None, 0
        reader = self.reader or device_used_reader()
        if reader is None:
            self._reason = "no CUDA GPU is visible to torch"
            return
        if self.baseline_bytes is None:
            self._reason = "no device-memory baseline was taken before the case (the case runner takes one)"
            return
        self._read, self._source = reader
        self.sample()

    def sample(self) -> None:
        """Record the device's current used memory."""
        if self._read is None:
            return
        used = self._read()
        with self._lock:
            self._peak = max(self._peak, used)

    def stop(self, window: Window) -> MonitorReading:
        """The peak minus the baseline, in MiB."""
        if self._read is None or self.baseline_bytes is None:
            return self.absent(self._reason or "the monitor was not started")
        self.sample()
        with self._lock:
            peak = self._peak
        if peak < self.baseline_bytes:
            return self.absent(
                f"the device's used memory ({peak / BYTES_PER_MB:.0f} MiB) fell below the baseline taken before the "
                f"case ({self.baseline_bytes / BYTES_PER_MB:.0f} MiB): another process freed memory meanwhile"
            )
        return MonitorReading(
            metrics={m.GPU_DEVICE_DELTA_PEAK: (peak - self.baseline_bytes) / BYTES_PER_MB},
            tags={
                "memory.gpu_device_delta_source": self._source,
                "memory.gpu_device_delta_scope": _SCOPE,
            },
        )
