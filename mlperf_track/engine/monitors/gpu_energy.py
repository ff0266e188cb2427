"""GPU energy over the timed window from NVML's total-energy counter, with a power-sampling fallback.

The counter (``nvmlDeviceGetTotalEnergyConsumption``, Volta and newer) is read at the window's edges. It
updates about every 100 ms, so windows shorter than ``min_window_s`` (1 s) give a meaningless figure and the
metrics are left out with a note (raise ``TimingConfig.min_time_s``). Where the counter is not supported we
integrate sampled power (trapezoids); on A100/H100-class GPUs sampled power sees only part of the activity,
so the tag ``energy.gpu_source`` says which method was used. Either way it is the whole GPU's energy.

Some devices report a counter that never moves (virtual GPUs, some MIG set-ups) or reads zero, and some report
zero power. A window over which the counter did not advance, or power samples that are all zero, give no
figure: the metrics are left out with a note, never reported as 0 W (a working GPU always draws power).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable

from mlperf_track import metrics as m
from mlperf_track.engine.clock import Clock, PerfCounterClock
from mlperf_track.engine.monitors.base import Monitor, MonitorReading, Window
from mlperf_track.engine.monitors.nvml import GpuCounters, NvmlUnavailableError, nvml_error_types, open_nvml_device

_SCOPE = "whole GPU (every process on it), not this process alone"


class GpuEnergyMonitor(Monitor):
    """Mean GPU power and GPU energy per sample.

    Args:
        counters: Returns the GPU's NVML counters (default: torch's current device).
        clock: Wall-clock source for the window's edges and the power samples.
        min_window_s: Shorter windows leave the metrics out.
    """

    name = "gpu_energy"
    metric_keys = (m.GPU_POWER_MEAN, m.GPU_ENERGY_PER_SAMPLE)
    samples = True

    def __init__(
        self,
        counters: Callable[[], GpuCounters] = open_nvml_device,
        clock: Clock | None = None,
        min_window_s: float = 1.0,
    ) -> None:
        self.counters = counters
        self.clock = clock or PerfCounterClock()
        self.min_window_s = min_window_s
        self._gpu: GpuCounters | None = None
        self._reason: str | None = None
        self._mode: str | None = None
        self._start_ns = 0
        self._start_mj = 0
        self._power: list[tuple[int, float]] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        """Open NVML and read the energy counter (or the first power sample)."""
        self._gpu, self._mode, self._reason, self._power = None, None, None, []
        try:
            self._gpu = self.counters()
        except NvmlUnavailableError as error:
            self._reason = str(error)
            return
        errors = nvml_error_types()
        try:
            self._start_mj = self._gpu.total_energy_mj()
            self._mode = "nvml_energy_counter" if self._start_mj > 0 else None
        except errors:
            self._mode = None
        if self._mode is None:  # no counter, or one that reads zero: integrate sampled power instead
            try:
                self._gpu.power_mw()
                self._mode = "nvml_power_sampling"
            except errors as error:
                self._reason = f"this GPU reports neither total energy nor power through NVML ({error})"
                return
        self._start_ns = self.clock.now_ns()
        if self._mode == "nvml_power_sampling":
            self.sample()

    def sample(self) -> None:
        """Record the current power (only in power-sampling mode)."""
        if self._mode != "nvml_power_sampling" or self._gpu is None:
            return
        watts = self._gpu.power_mw() / 1e3
        with self._lock:
            self._power.append((self.clock.now_ns(), watts))

    def _sampled_joules(self) -> float:
        with self._lock:
            points = list(self._power)
        return sum((t1 - t0) / 1e9 * (p0 + p1) / 2 for (t0, p0), (t1, p1) in itertools.pairwise(points))

    def stop(self, window: Window) -> MonitorReading:
        """Energy per sample (J) and mean power (W) of the whole GPU."""
        if self._gpu is None or self._mode is None:
            return self.absent(self._reason or "the monitor was not started")
        if self._mode == "nvml_energy_counter":
            end_mj = self._gpu.total_energy_mj()
            end_ns = self.clock.now_ns()
            joules = (end_mj - self._start_mj) / 1e3
        else:
            self.sample()
            end_ns = self.clock.now_ns()
            joules = self._sampled_joules()
        seconds = (end_ns - self._start_ns) / 1e9
        if seconds < self.min_window_s:
            return self.absent(
                f"timed window {seconds:.3g} s is shorter than the {self.min_window_s:g} s NVML energy needs "
                "(the counter updates about every 100 ms); raise TimingConfig.min_time_s"
            )
        if not joules > 0:  # also catches NaN
            what = "energy counter did not advance" if self._mode == "nvml_energy_counter" else "power read zero"
            return self.absent(
                f"NVML's {what} over a {seconds:.3g} s window ({joules:g} J): this device does not report its "
                "energy (a frozen or zero counter, common on virtual GPUs and MIG instances)"
            )
        reading = MonitorReading(
            metrics={m.GPU_POWER_MEAN: joules / seconds},
            tags={"energy.gpu_source": self._mode, "energy.gpu_scope": _SCOPE},
        )
        if window.samples > 0:
            reading.metrics[m.GPU_ENERGY_PER_SAMPLE] = joules / window.samples
        else:
            reading.notes[m.GPU_ENERGY_PER_SAMPLE] = "no samples were processed in the window"
        return reading
