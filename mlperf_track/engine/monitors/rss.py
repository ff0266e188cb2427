"""Peak resident set size (RSS) of this process during the timed window.

``getrusage().ru_maxrss`` is cheap but is the peak over the process's whole life and cannot be reset, so a
case measured after a bigger one would inherit its peak. On Linux we instead reset the kernel's own
high-water mark (write ``5`` to ``/proc/self/clear_refs``, Linux >= 4.0) at the window's start and read
``VmHWM`` from ``/proc/self/status`` at its end: exact and free. Where that is not possible we sample RSS
with psutil every sampling period, which can miss spikes shorter than the period; the tag
``memory.cpu_rss_peak_source`` says which one was used.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import psutil

from mlperf_track import metrics as m
from mlperf_track.engine.monitors.base import BYTES_PER_MB, Monitor, MonitorReading, Window

_VMHWM = re.compile(r"^VmHWM:\s+(\d+)\s+kB", re.MULTILINE)


class RssPeakMonitor(Monitor):
    """Peak RSS: the kernel's reset high-water mark where possible, else psutil sampling.

    Args:
        proc_dir: The ``/proc/<pid>`` directory of this process (a parameter so tests can fake it).
        process: The psutil process used for sampling.
    """

    name = "cpu_rss"
    metric_keys = (m.CPU_RSS_PEAK,)
    samples = True

    def __init__(self, proc_dir: Path = Path("/proc/self"), process: psutil.Process | None = None) -> None:
        self.proc_dir = proc_dir
        self.process = process or psutil.Process()
        self._lock = threading.Lock()
        self._peak = 0
        self._hwm_reset = False

    def _reset_hwm(self) -> bool:
        try:
            (self.proc_dir / "clear_refs").write_text("5")
        except OSError:
            return False
        return self._read_hwm() is not None

    def _read_hwm(self) -> int | None:
        try:
            match = _VMHWM.search((self.proc_dir / "status").read_text())
        except OSError:
            return None
        return int(match.group(1)) * 1024 if match else None

    def start(self) -> None:
        """Reset the high-water mark (if possible) and take the first sample."""
        self._peak = int(self.process.memory_info().rss)
        self._hwm_reset = self._reset_hwm()

    def sample(self) -> None:
        """Record the current RSS (nothing to do while the kernel keeps the high-water mark for us)."""
        if self._hwm_reset:
            return
        rss = int(self.process.memory_info().rss)
        with self._lock:
            self._peak = max(self._peak, rss)

    def stop(self, window: Window) -> MonitorReading:
        """The peak RSS in MiB."""
        self._peak = max(self._peak, int(self.process.memory_info().rss))
        peak, source = self._peak, "psutil_sampling"
        if self._hwm_reset:
            hwm = self._read_hwm()
            if hwm is not None:
                peak, source = max(peak, hwm), "vmhwm"
        if peak <= 0:
            return self.absent("could not read the process RSS")
        return MonitorReading(
            metrics={m.CPU_RSS_PEAK: peak / BYTES_PER_MB}, tags={"memory.cpu_rss_peak_source": source}
        )
