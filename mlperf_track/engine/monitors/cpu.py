"""Process CPU utilisation over the timed window, from the kernel's CPU-time counters.

Counters are read at the window's edges (no sampling): ``(user + system time) / wall time * 100``.
100 means one core fully busy; a process using several cores reports more than 100 (as ``top`` does).
"""

from __future__ import annotations

import psutil

from mlperf_track import metrics as m
from mlperf_track.engine.clock import Clock, PerfCounterClock
from mlperf_track.engine.monitors.base import Monitor, MonitorReading, Window


class CpuUtilizationMonitor(Monitor):
    """CPU time of this process (all threads) divided by the window's wall time.

    Args:
        clock: Wall-clock source for the window's edges.
        process: The process to watch (default: this one).
    """

    name = "cpu_utilization"
    metric_keys = (m.CPU_UTILIZATION,)

    def __init__(self, clock: Clock | None = None, process: psutil.Process | None = None) -> None:
        self.clock = clock or PerfCounterClock()
        self.process = process or psutil.Process()
        self._start: tuple[float, int] | None = None

    def _cpu_seconds(self) -> float:
        times = self.process.cpu_times()
        return float(times.user + times.system)

    def start(self) -> None:
        """Read the CPU-time counters."""
        self._start = (self._cpu_seconds(), self.clock.now_ns())

    def stop(self, window: Window) -> MonitorReading:
        """Utilisation over the window, in percent of one core."""
        if self._start is None:
            return self.absent("the monitor was not started")
        cpu_start, wall_start = self._start
        wall_s = (self.clock.now_ns() - wall_start) / 1e9
        cpu_s = self._cpu_seconds() - cpu_start
        if wall_s <= 0:
            return self.absent("the window had no measurable length")
        return MonitorReading(
            metrics={m.CPU_UTILIZATION: 100.0 * cpu_s / wall_s},
            tags={"cpu.utilization_scope": "process, 100 = one core"},
        )
