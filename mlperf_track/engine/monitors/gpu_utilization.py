"""GPU utilisation as NVML reports it, sampled during the timed window.

NVML's figure is the percent of its last sample period (1/6 s to 1 s depending on the GPU) in which at
least one kernel was running: it says the GPU was busy, not how much of it was used (not SM occupancy).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from mlperf_track import metrics as m
from mlperf_track.engine.monitors.base import Monitor, MonitorReading, Window
from mlperf_track.engine.monitors.nvml import GpuCounters, NvmlUnavailableError, nvml_error_types, open_nvml_device


class GpuUtilizationMonitor(Monitor):
    """Mean of NVML utilisation samples taken during the window (and one at its end).

    Args:
        counters: Returns the GPU's NVML counters (default: torch's current device).
    """

    name = "gpu_utilization"
    metric_keys = (m.GPU_UTILIZATION,)
    zero_allowed = frozenset(metric_keys)  # an idle GPU reads 0%
    samples = True

    def __init__(self, counters: Callable[[], GpuCounters] = open_nvml_device) -> None:
        self.counters = counters
        self._gpu: GpuCounters | None = None
        self._reason: str | None = None
        self._values: list[float] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        """Open NVML and check that utilisation is readable."""
        self._gpu, self._reason, self._values = None, None, []
        try:
            gpu = self.counters()
            gpu.utilization_pct()
        except NvmlUnavailableError as error:
            self._reason = str(error)
            return
        except nvml_error_types() as error:
            self._reason = f"NVML does not report utilisation for this GPU ({error})"
            return
        self._gpu = gpu

    def sample(self) -> None:
        """Record the current utilisation."""
        if self._gpu is None:
            return
        value = self._gpu.utilization_pct()
        with self._lock:
            self._values.append(value)

    def stop(self, window: Window) -> MonitorReading:
        """Mean utilisation in percent."""
        if self._gpu is None:
            return self.absent(self._reason or "the monitor was not started")
        self.sample()
        with self._lock:
            values = list(self._values)
        return MonitorReading(
            metrics={m.GPU_UTILIZATION: sum(values) / len(values)},
            tags={"gpu.utilization_meaning": "NVML: % of time a kernel was running (not SM occupancy)"},
        )
