"""FakeClock, the host-clock timer and Stopwatch."""

from __future__ import annotations

import time

import pytest

from mlperf_track.engine.clock import Clock, FakeClock, PerfCounterClock
from mlperf_track.engine.timing import Stopwatch, SyncClockTimer, make_timer


def test_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock(start_ns=100)
    assert clock.now_ns() == 100 and clock.now_ns() == 100
    clock.advance(0.5)
    clock.advance_ns(5)
    assert clock.now_ns() == 100 + 500_000_005
    with pytest.raises(ValueError, match="backwards"):
        clock.advance_ns(-1)


def test_fake_clock_tick_and_protocol() -> None:
    clock = FakeClock(tick_ns=10)
    assert [clock.now_ns() for _ in range(3)] == [0, 10, 20]
    assert isinstance(clock, Clock) and isinstance(PerfCounterClock(), Clock)


def test_sync_clock_timer_measures_the_call() -> None:
    clock = FakeClock()
    timer = SyncClockTimer(clock, "cpu")
    assert timer.time_call(lambda: clock.advance(0.003)) == 3_000_000
    assert timer.name == "fake"


def test_make_timer_uses_the_host_clock_on_cpu() -> None:
    timer = make_timer("cpu")
    assert isinstance(timer, SyncClockTimer) and timer.name == "perf_counter"
    assert timer.time_call(lambda: time.sleep(0.002)) >= 2_000_000


def test_stopwatch_with_fake_clock() -> None:
    clock = FakeClock()
    with Stopwatch(clock=clock, device="cpu") as watch:
        clock.advance(1.25)
    assert watch.seconds == pytest.approx(1.25)


def test_stopwatch_refuses_early_read() -> None:
    watch = Stopwatch()
    with pytest.raises(RuntimeError, match="before"):
        _ = watch.seconds
