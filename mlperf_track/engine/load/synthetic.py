"""Synthetic models with a known service time, and the queueing theory they are checked against.

:class:`SyntheticModel` takes ``base_ms + per_sample_ms * n`` for a batch of ``n``. On a real clock it
busy-waits until that deadline (a spin, not a sleep: it occupies a CPU as a model does, and it ends on time
where ``time.sleep`` overshoots by the timer slack); on a :class:`~mlperf_track.engine.clock.FakeClock` it
advances the clock instead, for virtual-time tests.

The spin must leave the GIL to the generator's thread as a PyTorch model does (its operators run for
hundreds of microseconds with the GIL released). A spin of few-microsecond ufuncs releases it only for windows
shorter than a thread takes to wake up, so a waiting thread rarely gets it before CPython's 5 ms switch
interval forces a hand-over: measured, that delayed the generator's issues by up to 4 ms (p99) and the worker's
own wake-ups alike, and put the M/D/1 queueing 5-7% above theory. So the spin runs long numpy ufuncs (about
:data:`LONG_CHUNK_NS` each, sized by a calibration at construction) while the deadline is far, and short ones
(a few microseconds, the overshoot) near it.
"""

from __future__ import annotations

import numpy as np

from mlperf_track.engine.clock import Clock, FakeClock, PerfCounterClock
from mlperf_track.errors import ConfigError

#: Target duration of one long GIL-free spin step: well above a thread's wake-up latency (tens of microseconds).
LONG_CHUNK_NS = 200_000
#: Elements of one short spin step (a few microseconds: the most the spin overshoots its deadline by).
SHORT_CHUNK = 8192
#: Long steps are taken while the deadline is further than this many long steps away.
_LONG_MARGIN = 3


class SyntheticModel:
    """A model whose batch of ``n`` samples takes exactly ``base_ms + per_sample_ms * n``.

    Args:
        base_ms: Time of any call.
        per_sample_ms: Extra time per sample.
        clock: The clock to spin on (``perf_counter``) or to advance (a ``FakeClock``).
        fail_every: Raise on every ``fail_every``-th call (0: never), to exercise error counting.
    """

    def __init__(
        self, base_ms: float, per_sample_ms: float = 0.0, clock: Clock | None = None, fail_every: int = 0
    ) -> None:
        if base_ms < 0 or per_sample_ms < 0:
            raise ConfigError("service time", (base_ms, per_sample_ms), "milliseconds >= 0")
        self.base_ns = round(base_ms * 1e6)
        self.per_sample_ns = round(per_sample_ms * 1e6)
        self.clock = clock or PerfCounterClock()
        self.fail_every = fail_every
        self.calls = 0
        self.batch_sizes: list[int] = []
        self._work = np.ones(SHORT_CHUNK)
        self._scratch = np.empty(SHORT_CHUNK)
        self._long_work = self._work
        self._long_scratch = self._scratch
        self.long_chunk_ns = 0
        if not isinstance(self.clock, FakeClock):
            self._calibrate()

    def _calibrate(self) -> None:
        """Size the long spin step to about :data:`LONG_CHUNK_NS` on this machine (the fastest of a few tries)."""
        best = None
        for _ in range(20):
            before = self.clock.now_ns()
            np.multiply(self._work, self._work, out=self._scratch)
            elapsed = max(1, self.clock.now_ns() - before)
            best = elapsed if best is None else min(best, elapsed)
        assert best is not None
        size = max(SHORT_CHUNK, round(SHORT_CHUNK * LONG_CHUNK_NS / best))
        self._long_work, self._long_scratch = np.ones(size), np.empty(size)
        timings = []
        for _ in range(5):
            before = self.clock.now_ns()
            np.multiply(self._long_work, self._long_work, out=self._long_scratch)
            timings.append(self.clock.now_ns() - before)
        self.long_chunk_ns = int(np.median(timings))

    def service_ns(self, samples: int) -> int:
        """The service time of a batch of ``samples``."""
        return self.base_ns + self.per_sample_ns * samples

    def _spin_until(self, deadline: int) -> None:
        """Busy-wait until ``deadline`` in numpy ufuncs, which run with the GIL released."""
        far = _LONG_MARGIN * self.long_chunk_ns
        now = self.clock.now_ns()
        while now < deadline:
            if deadline - now > far:
                np.multiply(self._long_work, self._long_work, out=self._long_scratch)
            else:
                np.multiply(self._work, self._work, out=self._scratch)
            now = self.clock.now_ns()

    def __call__(self, samples: int) -> None:
        self.calls += 1
        self.batch_sizes.append(samples)
        duration = self.service_ns(samples)
        if isinstance(self.clock, FakeClock):
            self.clock.advance_ns(duration)
        else:
            self._spin_until(self.clock.now_ns() + duration)
        if self.fail_every and self.calls % self.fail_every == 0:
            raise RuntimeError(f"synthetic failure on call {self.calls}")


def no_op(samples: int) -> None:
    """A model that does nothing: what is left is the generator's own cost."""


def md1_mean_queue_delay(rate_qps: float, service_s: float) -> float:
    """The M/D/1 mean waiting time in queue, ``W = rho * S / (2 * (1 - rho))`` with ``rho = rate * S``.

    Raises:
        ConfigError: When ``rho >= 1`` (the queue grows without bound).
    """
    rho = rate_qps * service_s
    if not 0 <= rho < 1:
        raise ConfigError("utilisation", rho, "a value in [0, 1): the rate times the service time")
    return rho * service_s / (2.0 * (1.0 - rho))
