"""Injectable time sources for the engine.

Every place in the engine that reads the time takes a :class:`Clock`, so tests can drive timing, warm-up and
adaptive stopping deterministically with a :class:`FakeClock` instead of sleeping. Other layers' tests may use
:class:`FakeClock` too.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """A monotonic time source with nanosecond resolution."""

    def now_ns(self) -> int:
        """The current time in nanoseconds (only differences are meaningful)."""
        ...


class PerfCounterClock:
    """The host's highest-resolution monotonic clock (:func:`time.perf_counter_ns`)."""

    name = "perf_counter"

    def now_ns(self) -> int:
        """The current ``perf_counter_ns`` reading."""
        return time.perf_counter_ns()


class FakeClock:
    """A clock that only moves when told to.

    Callables under test advance it to simulate how long they take::

        clock = FakeClock()
        def call() -> None:
            clock.advance(0.002)  # this "call" takes 2 ms

    Args:
        start_ns: The initial reading.
        tick_ns: Added automatically after every :meth:`now_ns` read (0: the clock never moves by itself).
    """

    name = "fake"

    def __init__(self, start_ns: int = 0, tick_ns: int = 0) -> None:
        self._now_ns = int(start_ns)
        self.tick_ns = int(tick_ns)
        self.reads = 0

    def now_ns(self) -> int:
        """The current fake time (then advanced by ``tick_ns``)."""
        self.reads += 1
        value = self._now_ns
        self._now_ns += self.tick_ns
        return value

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        self.advance_ns(round(seconds * 1e9))

    def advance_ns(self, nanoseconds: int) -> None:
        """Move the clock forward by ``nanoseconds`` (must not be negative)."""
        if nanoseconds < 0:
            raise ValueError(f"a clock cannot go backwards (advance_ns({nanoseconds}))")
        self._now_ns += int(nanoseconds)


def clock_name(clock: Clock) -> str:
    """A short name for ``clock`` to record as a tag."""
    return str(getattr(clock, "name", type(clock).__name__))
