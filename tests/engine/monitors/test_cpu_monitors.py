"""CPU utilisation and RSS-peak monitors on the real process."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from mlperf_track import metrics as m
from mlperf_track.engine.monitors import CpuUtilizationMonitor, MonitorGroup, RssPeakMonitor, Window


def test_cpu_utilization_is_positive_under_a_busy_loop() -> None:
    monitor = CpuUtilizationMonitor()
    monitor.start()
    end = time.perf_counter() + 0.15
    total = 0
    while time.perf_counter() < end:
        total += 1
    reading = monitor.stop(Window(seconds=0.15, samples=1))
    assert reading.metrics[m.CPU_UTILIZATION] > 10.0


def test_cpu_utilization_of_short_windows_stays_within_the_usable_cores() -> None:
    """The tick-counted /proc figure once gave 457% on two cores for a 40 ms window; the exact counter cannot."""
    from mlperf_track.engine.environment import usable_cores

    for _ in range(20):
        monitor = CpuUtilizationMonitor()
        monitor.start()
        end = time.perf_counter() + 0.01
        while time.perf_counter() < end:
            pass
        reading = monitor.stop(Window(seconds=0.01, samples=1))
        assert 0 <= reading.metrics[m.CPU_UTILIZATION] <= 100 * usable_cores()
    assert reading.tags["cpu.cores_usable"] == str(usable_cores())
    assert "100 = one core" in reading.tags["cpu.utilization_scope"]
    assert reading.tags["cpu.utilization_source"] == "clock_process_cputime"


def test_another_process_is_read_through_psutil() -> None:
    import psutil

    parent = psutil.Process().parent()
    assert parent is not None
    monitor = CpuUtilizationMonitor(process=parent)
    monitor.start()
    time.sleep(0.3)
    reading = monitor.stop(Window(seconds=0.3, samples=1))
    if reading.metrics:
        assert reading.tags["cpu.utilization_source"] == "proc_stat_ticks"
    else:  # a busy parent over a short window can exceed the bound at 10 ms resolution: left out, with a note
        assert "too short" in reading.notes[m.CPU_UTILIZATION]


def test_cpu_utilization_is_low_while_sleeping() -> None:
    monitor = CpuUtilizationMonitor()
    monitor.start()
    time.sleep(0.15)
    assert monitor.stop(Window(seconds=0.15, samples=1)).metrics[m.CPU_UTILIZATION] < 50.0


def _allocate_and_touch(megabytes: int) -> np.ndarray:
    block = np.ones(megabytes * 1024 * 1024 // 8)  # np.ones writes every page, so it is resident
    return block


def test_rss_peak_grows_when_allocating() -> None:
    group = MonitorGroup([RssPeakMonitor()], interval_s=0.01)
    group.start()
    idle = group.stop(Window(seconds=0.0, samples=1)).metrics[m.CPU_RSS_PEAK]
    group.start()
    block = _allocate_and_touch(96)
    reading = group.stop(Window(seconds=0.0, samples=1))
    del block
    assert reading.metrics[m.CPU_RSS_PEAK] >= idle + 80
    assert reading.tags["memory.cpu_rss_peak_source"] in {"vmhwm", "psutil_sampling"}


def test_rss_peak_remembers_memory_freed_inside_the_window() -> None:
    monitor = RssPeakMonitor()
    monitor.start()
    if monitor.stop(Window(seconds=0.0, samples=1)).tags["memory.cpu_rss_peak_source"] != "vmhwm":
        pytest.skip("this kernel does not let the process reset its RSS high-water mark")
    monitor.start()
    idle = monitor.stop(Window(seconds=0.0, samples=1)).metrics[m.CPU_RSS_PEAK]
    monitor.start()
    block = _allocate_and_touch(96)
    del block  # freed before the window ends and never sampled: only the kernel's peak remembers it
    assert monitor.stop(Window(seconds=0.0, samples=1)).metrics[m.CPU_RSS_PEAK] >= idle + 80


def test_rss_peak_falls_back_to_sampling(tmp_path: Path) -> None:
    monitor = RssPeakMonitor(proc_dir=tmp_path / "missing")  # no clear_refs/status: sampling only
    monitor.start()
    reading = monitor.stop(Window(seconds=0.0, samples=1))
    assert reading.tags["memory.cpu_rss_peak_source"] == "psutil_sampling"
    assert reading.metrics[m.CPU_RSS_PEAK] > 10


def test_rss_peak_reads_a_fake_high_water_mark(tmp_path: Path) -> None:
    (tmp_path / "status").write_text("Name:\tpython\nVmHWM:\t 9999999 kB\nVmRSS:\t 1000 kB\n")
    monitor = RssPeakMonitor(proc_dir=tmp_path)
    monitor.start()
    assert (tmp_path / "clear_refs").read_text() == "5"
    reading = monitor.stop(Window(seconds=0.0, samples=1))
    assert reading.tags["memory.cpu_rss_peak_source"] == "vmhwm"
    assert reading.metrics[m.CPU_RSS_PEAK] == 9999999 / 1024
