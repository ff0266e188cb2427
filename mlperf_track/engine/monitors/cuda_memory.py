"""Peak memory of torch's CUDA caching allocator over the timed window.

The peaks are reset at the window's start (``torch.cuda.reset_peak_memory_stats``), so they cover the timed
calls only. They count memory torch allocated, not the CUDA context or other libraries' memory (see
:mod:`~mlperf_track.engine.monitors.gpu_process_memory` for the driver's view).
"""

from __future__ import annotations

from mlperf_track import metrics as m
from mlperf_track.engine.monitors.base import BYTES_PER_MB, Monitor, MonitorReading, Window


class CudaAllocatorMonitor(Monitor):
    """``max_memory_allocated`` and ``max_memory_reserved`` of the current CUDA device, in MiB."""

    name = "cuda_allocator"
    metric_keys = (m.GPU_PEAK_ALLOCATED, m.GPU_PEAK_RESERVED)

    def __init__(self) -> None:
        self._reason: str | None = None
        self._device: int | None = None

    def start(self) -> None:
        """Synchronise and reset the allocator's peak statistics."""
        import torch

        self._device, self._reason = None, None
        if not torch.cuda.is_available():
            self._reason = "no CUDA GPU is visible to torch"
            return
        self._device = torch.cuda.current_device()
        torch.cuda.synchronize(self._device)
        torch.cuda.reset_peak_memory_stats(self._device)

    def stop(self, window: Window) -> MonitorReading:
        """The allocator's peaks since :meth:`start`."""
        import torch

        if self._device is None:
            return self.absent(self._reason or "the monitor was not started")
        torch.cuda.synchronize(self._device)
        return MonitorReading(
            metrics={
                m.GPU_PEAK_ALLOCATED: torch.cuda.max_memory_allocated(self._device) / BYTES_PER_MB,
                m.GPU_PEAK_RESERVED: torch.cuda.max_memory_reserved(self._device) / BYTES_PER_MB,
            },
            tags={"memory.gpu_peak_scope": "torch caching allocator"},
        )
