"""Synthetic models with a known service time, and the queueing theory they are checked against.

:class:`SyntheticModel` takes ``base_ms + per_sample_ms * n`` for a batch of ``n``. On a real clock it
busy-waits until that deadline (a spin, not a sleep: it occupies a CPU as a model does, and it ends on time
where ``time.sleep`` overshoots by the timer slack); on a :class:`~mlperf_track.engine.clock.FakeClock` it
advances the clock instead, for virtual-time tests. Each turn of the spin is a numpy ufunc over 8192 numbers
(a few microseconds), which numpy runs with the GIL released: like a PyTorch operator, the spin does not keep
the generator's thread from issuing on time. A bare ``while clock() < deadline`` loop holds the GIL for the
interpreter's whole switch interval (5 ms), and then the generator, not the queue, decides when queries arrive.
"""

from __future__ import annotations

import numpy as np

from mlperf_track.engine.clock import Clock, FakeClock, PerfCounterClock
from mlperf_track.errors import ConfigError


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
        self._work = np.ones(8192)
        self._scratch = np.empty(8192)

    def service_ns(self, samples: int) -> int:
        """The service time of a batch of ``samples``."""
        return self.base_ns + self.per_sample_ns * samples

    def __call__(self, samples: int) -> None:
        self.calls += 1
        self.batch_sizes.append(samples)
        duration = self.service_ns(samples)
        if isinstance(self.clock, FakeClock):
            self.clock.advance_ns(duration)
        else:
            deadline = self.clock.now_ns() + duration
            while self.clock.now_ns() < deadline:
                np.multiply(self._work, self._work, out=self._scratch)  # runs with the GIL released
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
