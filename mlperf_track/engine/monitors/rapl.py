"""CPU package energy from the Linux RAPL powercap interface.

Reads ``/sys/class/powercap/intel-rapl:<N>/energy_uj`` (one zone per CPU package; AMD CPUs use the same
names) at the window's edges, handling counter wrap-around with ``max_energy_range_uj``. The figure is the
whole package's energy: every process on the machine contributes, so it is only meaningful on a quiet host
(tag ``energy.cpu_scope``). Since Linux 5.10 ``energy_uj`` is readable only by root (CVE-2020-8694).
"""

from __future__ import annotations

import re
from pathlib import Path

from mlperf_track import metrics as m
from mlperf_track.engine.clock import Clock, PerfCounterClock
from mlperf_track.engine.monitors.base import Monitor, MonitorReading, Window

#: Top-level package zones only (``intel-rapl:0``), not their sub-zones (``intel-rapl:0:0`` = cores, dram).
_PACKAGE_ZONE = re.compile(r"^intel-rapl:\d+$")
POWERCAP_ROOT = Path("/sys/class/powercap")


class RaplEnergyMonitor(Monitor):
    """CPU package energy per sample and mean package power over the window.

    Args:
        root: The powercap directory (a parameter so tests can use a fake one).
        clock: Wall-clock source for the window's edges.
        min_window_s: Shorter windows leave the metrics out (RAPL updates about every millisecond).
    """

    name = "cpu_energy"
    metric_keys = (m.CPU_ENERGY_PER_SAMPLE, m.CPU_POWER_MEAN)

    def __init__(self, root: Path = POWERCAP_ROOT, clock: Clock | None = None, min_window_s: float = 0.01) -> None:
        self.root = root
        self.clock = clock or PerfCounterClock()
        self.min_window_s = min_window_s
        self._zones: list[Path] = []
        self._start: tuple[list[int], int] | None = None
        self._reason: str | None = None

    def _read(self) -> list[int]:
        return [int((zone / "energy_uj").read_text().strip()) for zone in self._zones]

    def start(self) -> None:
        """Find the package zones and read their counters."""
        self._start, self._reason = None, None
        self._zones = sorted(p for p in self.root.glob("intel-rapl:*") if _PACKAGE_ZONE.match(p.name))
        if not self._zones:
            self._reason = f"no RAPL package zones under {self.root} (not Linux on x86, or hidden in this VM/container)"
            return
        try:
            energies = self._read()
        except PermissionError:
            self._reason = (
                f"{self._zones[0] / 'energy_uj'} is readable only by root (Linux >= 5.10); "
                "run as root or `sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj`"
            )
            return
        except (OSError, ValueError) as error:
            self._reason = f"could not read RAPL energy counters: {error}"
            return
        self._start = (energies, self.clock.now_ns())

    def _delta_uj(self, zone: Path, before: int, after: int) -> int:
        if after >= before:
            return after - before
        wrap = int((zone / "max_energy_range_uj").read_text().strip())
        return after + wrap - before

    def stop(self, window: Window) -> MonitorReading:
        """Energy per sample (J) and mean power (W) of all CPU packages."""
        if self._start is None:
            return self.absent(self._reason or "the monitor was not started")
        before, start_ns = self._start
        try:
            after = self._read()
            joules = sum(self._delta_uj(z, b, a) for z, b, a in zip(self._zones, before, after, strict=True)) / 1e6
        except (OSError, ValueError) as error:
            return self.absent(f"could not read RAPL energy counters: {error}")
        seconds = (self.clock.now_ns() - start_ns) / 1e9
        if seconds < self.min_window_s:
            return self.absent(f"timed window {seconds:.3g} s is shorter than {self.min_window_s} s")
        reading = MonitorReading(
            metrics={m.CPU_POWER_MEAN: joules / seconds},
            tags={
                "energy.cpu_source": "rapl",
                "energy.cpu_scope": f"{len(self._zones)} CPU package(s), all processes on the machine",
            },
        )
        if window.samples > 0:
            reading.metrics[m.CPU_ENERGY_PER_SAMPLE] = joules / window.samples
        else:
            reading.notes[m.CPU_ENERGY_PER_SAMPLE] = "no samples were processed in the window"
        return reading
