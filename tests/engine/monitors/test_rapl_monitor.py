"""RAPL package energy with a fake powercap directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlperf_track import metrics as m
from mlperf_track.engine.clock import FakeClock
from mlperf_track.engine.monitors import RaplEnergyMonitor, Window


def _zone(root: Path, name: str, energy_uj: int, max_uj: int = 262_143_328_850) -> Path:
    zone = root / name
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0\n")
    (zone / "energy_uj").write_text(f"{energy_uj}\n")
    (zone / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return zone


def test_energy_and_power_from_package_zones(tmp_path: Path) -> None:
    package0 = _zone(tmp_path, "intel-rapl:0", 1_000_000)
    package1 = _zone(tmp_path, "intel-rapl:1", 5_000_000)
    cores = _zone(tmp_path, "intel-rapl:0:0", 0)  # a sub-zone: already inside package 0, must not count
    clock = FakeClock()
    monitor = RaplEnergyMonitor(root=tmp_path, clock=clock)
    monitor.start()
    (package0 / "energy_uj").write_text("31000000\n")  # +30 J
    (package1 / "energy_uj").write_text("15000000\n")  # +10 J
    (cores / "energy_uj").write_text("99000000\n")
    clock.advance(2.0)
    reading = monitor.stop(Window(seconds=2.0, samples=80))
    assert reading.metrics[m.CPU_POWER_MEAN] == pytest.approx(40.0 / 2.0)
    assert reading.metrics[m.CPU_ENERGY_PER_SAMPLE] == pytest.approx(40.0 / 80)
    assert "2 CPU package(s)" in reading.tags["energy.cpu_scope"]


def test_counter_wrap_around(tmp_path: Path) -> None:
    package = _zone(tmp_path, "intel-rapl:0", 990, max_uj=1000)
    clock = FakeClock()
    monitor = RaplEnergyMonitor(root=tmp_path, clock=clock)
    monitor.start()
    (package / "energy_uj").write_text("10\n")
    clock.advance(1.0)
    reading = monitor.stop(Window(seconds=1.0, samples=1))
    assert reading.metrics[m.CPU_ENERGY_PER_SAMPLE] == pytest.approx(20 / 1e6)


def test_absent_powercap_gives_notes_not_zeros(tmp_path: Path) -> None:
    monitor = RaplEnergyMonitor(root=tmp_path / "nothing")
    monitor.start()
    reading = monitor.stop(Window(seconds=1.0, samples=1))
    assert reading.metrics == {}
    assert "no RAPL package zones" in reading.notes[m.CPU_ENERGY_PER_SAMPLE]
    assert set(reading.notes) == {m.CPU_ENERGY_PER_SAMPLE, m.CPU_POWER_MEAN}


def test_unreadable_counter_says_how_to_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _zone(tmp_path, "intel-rapl:0", 1)

    def refuse(self: Path, *args: object, **kwargs: object) -> str:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_text", refuse)
    monitor = RaplEnergyMonitor(root=tmp_path)
    monitor.start()
    monkeypatch.undo()
    reading = monitor.stop(Window(seconds=1.0, samples=1))
    assert reading.metrics == {}
    assert "readable only by root" in reading.notes[m.CPU_POWER_MEAN]


def test_short_window_is_left_out(tmp_path: Path) -> None:
    _zone(tmp_path, "intel-rapl:0", 1)
    clock = FakeClock()
    monitor = RaplEnergyMonitor(root=tmp_path, clock=clock, min_window_s=0.5)
    monitor.start()
    clock.advance(0.1)
    reading = monitor.stop(Window(seconds=0.1, samples=1))
    assert reading.metrics == {} and "shorter than 0.5 s" in reading.notes[m.CPU_POWER_MEAN]
