"""GPU memory of a case's preparation, kept apart from its timed window.

A runtime's preparation (export, compile, engine build, the warm-up calls over every batch size, the first call
and the accuracy pass) can need far more memory than steady inference: TensorRT's builder workspace, Inductor's
autotuning, the accuracy pass in chunks of the largest batch. Watching it with its own monitors gives
``memory/gpu_prepare_peak_mb`` (torch's caching allocator, peak reserved) and
``memory/gpu_prepare_device_delta_peak_mb`` (the device's used memory above the baseline read just before, which
sees every runtime's memory), and leaves the timed window's peaks to the window.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from mlperf_track import metrics as m
from mlperf_track.engine.device import is_cuda, release_memory
from mlperf_track.engine.monitors.base import Window

if TYPE_CHECKING:
    from mlperf_track.engine.monitors import MonitorGroup

logger = logging.getLogger(__name__)

#: Keys the watching monitors report, and the keys they stand for over the preparation.
PREPARE_KEYS = {m.GPU_PEAK_RESERVED: m.GPU_PREPARE_PEAK, m.GPU_DEVICE_DELTA_PEAK: m.GPU_PREPARE_DEVICE_DELTA_PEAK}
#: The preparation has no timed samples; the monitors used here do not need any.
NO_WINDOW = Window(seconds=0.0, samples=0)


def start_prepare_watch(device: str) -> tuple[int | None, MonitorGroup | None]:
    """On CUDA: free cached memory, read the device's used memory (the case's baseline), start the monitors.

    Returns:
        ``(baseline_bytes, group)``: the baseline (``None`` when unreadable) and the running monitors; ``(None,
        None)`` off CUDA.
    """
    if not is_cuda(device):
        return None, None
    from mlperf_track.engine.monitors import CudaAllocatorMonitor, GpuDeviceMemoryMonitor, MonitorGroup
    from mlperf_track.engine.monitors.gpu_device_memory import device_used_reader

    release_memory(device)
    reader = device_used_reader()
    baseline: int | None = None
    if reader is not None:
        try:
            baseline = reader[0]()
        except Exception as error:  # an unreadable device leaves the delta metrics out, with notes
            logger.info("no device-memory baseline: %s", error)
    group = MonitorGroup([CudaAllocatorMonitor(), GpuDeviceMemoryMonitor(reader, baseline)], interval_s=0.05)
    group.start()
    return baseline, group


def end_prepare_watch(group: MonitorGroup) -> tuple[dict[str, float], dict[str, str]]:
    """Stop the monitors; their readings under the preparation's keys (metrics, and notes for absent ones)."""
    reading = group.stop(NO_WINDOW)
    metrics = {PREPARE_KEYS[key]: value for key, value in reading.metrics.items() if key in PREPARE_KEYS}
    notes = {PREPARE_KEYS[key]: value for key, value in reading.notes.items() if key in PREPARE_KEYS}
    return metrics, notes
