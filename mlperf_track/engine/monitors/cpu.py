"""Process CPU utilisation over the timed window, from the kernel's CPU-time counters.

``cpu/utilization_pct = (CPU time of every thread of the process) / (wall time) * 100``, read at the window's
edges (no sampling). 100 means one core fully busy, as ``top`` counts; the value can reach ``100 x N`` where N
is the number of cores the process may run on (its CPU affinity), and the tags say both
(``cpu.utilization_scope``, ``cpu.cores_usable``).

For this process the CPU time comes from ``CLOCK_PROCESS_CPUTIME_ID`` (:func:`time.process_time_ns`), exact to
the nanosecond. ``/proc/<pid>/stat``, which psutil reads, counts in 10 ms clock ticks: over a 40 ms window that
error alone reached 457% on a 2-core machine. Another process is read through psutil; a figure above
``100 x N`` there is the tick error of a short window, and is left out with a note rather than reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import psutil

from mlperf_track import metrics as m
from mlperf_track.engine.clock import Clock, PerfCounterClock
from mlperf_track.engine.monitors.base import Monitor, MonitorReading, Window

#: Slack on the ``100 x cores`` bound for counters that are exact (timer edges are read a few us apart).
_EXACT_SLACK = 1.01


def _usable_cores() -> int:
    from mlperf_track.engine.environment import usable_cores

    return usable_cores()


class CpuUtilizationMonitor(Monitor):
    """CPU time of this process (all threads) divided by the window's wall time, in percent of one core.

    Args:
        clock: Wall-clock source for the window's edges.
        process: Another process to watch (read through psutil, 10 ms resolution); default: this one (exact).
        cores: Cores the process may use (the bound of the value is ``100 x cores``); default: its affinity.
        cpu_time_ns: CPU-time source for this process (tests inject one); default :func:`time.process_time_ns`.
    """

    name = "cpu_utilization"
    metric_keys = (m.CPU_UTILIZATION,)
    zero_allowed = frozenset(metric_keys)  # a process waiting on a device can use no CPU time in a window

    def __init__(
        self,
        clock: Clock | None = None,
        process: psutil.Process | None = None,
        cores: int | None = None,
        cpu_time_ns: Callable[[], int] | None = None,
    ) -> None:
        self.clock = clock or PerfCounterClock()
        self.process = process
        self.cores = cores
        if cpu_time_ns is not None:
            self._cpu_time_ns, self._exact = cpu_time_ns, True
        elif process is None or process.pid == psutil.Process().pid:
            self._cpu_time_ns, self._exact = time.process_time_ns, True
        else:
            self._cpu_time_ns, self._exact = self._psutil_cpu_time_ns, False
        self._start: tuple[int, int] | None = None

    def _psutil_cpu_time_ns(self) -> int:
        assert self.process is not None
        times = self.process.cpu_times()
        return round((times.user + times.system) * 1e9)

    def start(self) -> None:
        """Read the CPU-time counter and the clock."""
        self._start = (self._cpu_time_ns(), self.clock.now_ns())

    def stop(self, window: Window) -> MonitorReading:
        """Utilisation over the window, in percent of one core (at most ``100 x cores``)."""
        if self._start is None:
            return self.absent("the monitor was not started")
        cpu_start, wall_start = self._start
        wall_ns = self.clock.now_ns() - wall_start
        cpu_ns = self._cpu_time_ns() - cpu_start
        if wall_ns <= 0:
            return self.absent("the window had no measurable length")
        cores = self.cores or _usable_cores()
        value = 100.0 * cpu_ns / wall_ns
        bound = 100.0 * cores * (_EXACT_SLACK if self._exact else 1.0)
        if value > bound or value < 0:
            return self.absent(
                f"the CPU-time counter gave {value:.0f}% over a {wall_ns / 1e9:.3g} s window, more than {cores} "
                f"usable core(s) allow ({100 * cores}%): the window is too short for the counter's 10 ms ticks"
            )
        return MonitorReading(
            metrics={m.CPU_UTILIZATION: min(value, 100.0 * cores)},
            tags={
                "cpu.utilization_scope": f"process, 100 = one core, at most {100 * cores} ({cores} usable cores)",
                "cpu.cores_usable": str(cores),
                "cpu.utilization_source": "clock_process_cputime" if self._exact else "proc_stat_ticks",
            },
        )
