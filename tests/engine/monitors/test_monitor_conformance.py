"""One contract every monitor passes, against fakes of absent hardware and the real sources this machine has.

The contract: for each key a monitor may produce, the reading holds either a finite value above zero (or zero,
for the keys the monitor declares may be zero, like the utilisation of an idle device), or no value and a note
saying why. Never a zero standing in for "could not measure", never NaN, never a key it does not declare.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from fake_gpu import FakeGpu

from mlperf_track.engine.clock import FakeClock
from mlperf_track.engine.monitors import (
    CpuUtilizationMonitor,
    CudaAllocatorMonitor,
    GpuDeviceMemoryMonitor,
    GpuEnergyMonitor,
    GpuProcessMemoryMonitor,
    GpuUtilizationMonitor,
    Monitor,
    MonitorReading,
    RaplEnergyMonitor,
    RssPeakMonitor,
    Window,
)


@dataclass
class Scenario:
    """A monitor and how to drive it through one window (``drive`` does the work and returns the window)."""

    make: Callable[[], Monitor]
    drive: Callable[[Monitor], Window]


def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    total = 0
    while time.perf_counter() < end:
        total += 1


def _real(monitor_type: Callable[[], Monitor], seconds: float = 0.05) -> Scenario:
    def drive(monitor: Monitor) -> Window:
        monitor.start()
        _busy(seconds)
        monitor.sample()
        return Window(seconds=seconds, samples=4)

    return Scenario(monitor_type, drive)


def _fake_gpu_energy(gpu: FakeGpu, joules: float, seconds: float = 2.0) -> Scenario:
    clock = FakeClock()

    def drive(monitor: Monitor) -> Window:
        monitor.start()
        for _ in range(4):
            clock.advance(seconds / 4)
            gpu.energy_mj += round(joules * 250)  # a quarter of the joules, in millijoules
            monitor.sample()
        return Window(seconds=seconds, samples=64)

    return Scenario(lambda: GpuEnergyMonitor(counters=lambda: gpu, clock=clock), drive)


def _frozen() -> FakeGpu:
    return FakeGpu()  # the counter is never advanced below


def _zero_counter_zero_power() -> FakeGpu:
    gpu = FakeGpu()
    gpu.energy_mj, gpu.power = 0, 0
    return gpu


def _sampled_power() -> FakeGpu:
    return FakeGpu(energy=False)


def _device_memory(baseline: int | None, used: list[int]) -> Scenario:
    readings = iter(used)

    def read() -> int:
        return next(readings, used[-1])

    def drive(monitor: Monitor) -> Window:
        monitor.start()
        monitor.sample()
        return Window(seconds=1.0, samples=8)

    return Scenario(lambda: GpuDeviceMemoryMonitor((read, "fake"), baseline), drive)


def _process_memory(bytes_used: int | None) -> Scenario:
    gpu = FakeGpu()
    gpu.memory = {4242: bytes_used}

    def drive(monitor: Monitor) -> Window:
        monitor.start()
        monitor.sample()
        return Window(seconds=1.0, samples=1)

    return Scenario(lambda: GpuProcessMemoryMonitor(counters=lambda: gpu, pid=4242), drive)


def _cpu_with(cpu_ns: list[int], wall_s: float, cores: int) -> Scenario:
    clock = FakeClock()
    readings = iter(cpu_ns)

    def drive(monitor: Monitor) -> Window:
        monitor.start()
        clock.advance(wall_s)
        return Window(seconds=wall_s, samples=1)

    return Scenario(lambda: CpuUtilizationMonitor(clock=clock, cores=cores, cpu_time_ns=lambda: next(readings)), drive)


SCENARIOS: dict[str, Callable[[], Scenario]] = {
    # the real sources of this machine (absent ones must say why)
    "real-cpu-utilization": lambda: _real(CpuUtilizationMonitor),
    "real-rss": lambda: _real(RssPeakMonitor),
    "real-rapl": lambda: _real(RaplEnergyMonitor),
    "real-cuda-allocator": lambda: _real(CudaAllocatorMonitor),
    "real-gpu-energy": lambda: _real(GpuEnergyMonitor),
    "real-gpu-utilization": lambda: _real(GpuUtilizationMonitor),
    "real-gpu-process-memory": lambda: _real(GpuProcessMemoryMonitor),
    "real-gpu-device-memory": lambda: _real(GpuDeviceMemoryMonitor),
    # fakes of absent hardware, in the states real devices are seen in
    "gpu-energy-counter": lambda: _fake_gpu_energy(FakeGpu(), joules=400.0),
    "gpu-energy-frozen-counter": lambda: _fake_gpu_energy(_frozen(), joules=0.0),
    "gpu-energy-zero-counter-zero-power": lambda: _fake_gpu_energy(_zero_counter_zero_power(), joules=0.0),
    "gpu-energy-power-sampling": lambda: _fake_gpu_energy(_sampled_power(), joules=0.0),
    "gpu-energy-short-window": lambda: _fake_gpu_energy(FakeGpu(), joules=10.0, seconds=0.2),
    "gpu-device-memory": lambda: _device_memory(1 << 30, [(1 << 30) + (300 << 20), (1 << 30) + (500 << 20)]),
    "gpu-device-memory-no-baseline": lambda: _device_memory(None, [1 << 30]),
    "gpu-device-memory-below-baseline": lambda: _device_memory(2 << 30, [1 << 30]),
    "gpu-process-memory": lambda: _process_memory(256 << 20),
    "gpu-process-memory-unlisted": lambda: _process_memory(None),
    "cpu-utilization-exact": lambda: _cpu_with([0, 1_500_000_000], wall_s=1.0, cores=2),
    "cpu-utilization-impossible": lambda: _cpu_with([0, 4_500_000_000], wall_s=1.0, cores=2),
}


def check_contract(monitor: Monitor, reading: MonitorReading) -> None:
    """The conformance contract (see the module docstring)."""
    assert set(reading.metrics) <= set(monitor.metric_keys), f"undeclared keys: {set(reading.metrics)}"
    for key in monitor.metric_keys:
        measured, explained = key in reading.metrics, bool(reading.notes.get(key))
        assert measured != explained, f"{key}: must be measured or explained, not {'both' if measured else 'neither'}"
        if measured:
            value = reading.metrics[key]
            assert math.isfinite(value), f"{key} = {value}"
            assert value > 0 or (value == 0 and key in monitor.zero_allowed), f"{key} = {value}: zero is no reading"


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_monitor_contract(name: str) -> None:
    scenario = SCENARIOS[name]()
    monitor = scenario.make()
    window = scenario.drive(monitor)
    check_contract(monitor, monitor.stop(window))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("gpu-energy-frozen-counter", "did not advance"),
        ("gpu-energy-zero-counter-zero-power", "power read zero"),
        ("gpu-energy-power-sampling", "power read zero"),  # FakeGpu's power is steady at 100 W: see below
        ("gpu-device-memory-no-baseline", "no device-memory baseline"),
        ("gpu-device-memory-below-baseline", "fell below the baseline"),
        ("cpu-utilization-impossible", "too short for the counter"),
    ],
)
def test_the_notes_say_what_went_wrong(name: str, expected: str) -> None:
    scenario = SCENARIOS[name]()
    monitor = scenario.make()
    reading = monitor.stop(scenario.drive(monitor))
    if name == "gpu-energy-power-sampling":  # the fake's power is 100 W: a real figure, not a note
        assert reading.metrics[monitor.metric_keys[0]] == pytest.approx(100.0)
        return
    assert not reading.metrics
    assert all(expected in note for note in reading.notes.values()), reading.notes
