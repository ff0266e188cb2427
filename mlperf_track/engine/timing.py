"""Timing one call or a block of calls: host clock after a device sync, or CUDA events; a :class:`Stopwatch`.

On the CPU a call is timed with :func:`time.perf_counter_ns` (or an injected :class:`Clock`). On a GPU the
default is a pair of CUDA events recorded on the current stream around the call, followed by a device-wide
synchronize so no work leaks into the next iteration. A block (:meth:`IterationTimer.time_block`, for
throughput) is ``n`` back-to-back calls between the two clock reads or events, with one synchronize at the
end, so the device's queue stays full as in serving, as ``torch.utils.benchmark``'s ``blocked_autorange``.
Runtimes that launch on another stream must join the current stream before returning (or synchronise), or
the events would under-count; an injected clock switches CUDA timing to "synchronise, then read the host
clock", which has no such caveat.

How each runtime's GPU work is fenced by the events: eager and compile launch on the current stream itself (a
CUDA-graph replay of ``reduce-overhead`` too), so the end event follows their kernels. ONNX Runtime's CUDA
provider computes on a dedicated stream passed as ``user_compute_stream``, TensorRT's ``execute_async_v3`` on
a dedicated torch stream; both make that stream wait for the current stream before the call and the current
stream wait for it after, so the end event is recorded behind their work (never the legacy default stream,
no host synchronisation inside the call).
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol

from mlperf_track.engine.clock import Clock, PerfCounterClock, clock_name
from mlperf_track.engine.device import is_cuda, synchronize


class IterationTimer(Protocol):
    """Times a single call, including the device work it queued."""

    name: str

    def time_call(self, call: Callable[[], object]) -> int:
        """Run ``call`` once and return how long it took, in nanoseconds."""
        ...

    def time_block(self, call: Callable[[], object], calls: int) -> int:
        """Run ``call`` ``calls`` times back to back (one device sync at the end); return the nanoseconds."""
        ...


class SyncClockTimer:
    """Read ``clock``, call, synchronise ``device``, read ``clock`` again."""

    def __init__(self, clock: Clock, device: str) -> None:
        self.clock = clock
        self.device = device
        self.name = clock_name(clock)

    def time_call(self, call: Callable[[], object]) -> int:
        """Time one call with the host clock."""
        start = self.clock.now_ns()
        call()
        synchronize(self.device)
        return self.clock.now_ns() - start

    def time_block(self, call: Callable[[], object], calls: int) -> int:
        """Time ``calls`` back-to-back calls with the host clock and one synchronize at the end."""
        start = self.clock.now_ns()
        for _ in range(calls):
            call()
        synchronize(self.device)
        return self.clock.now_ns() - start


class CudaEventTimer:
    """CUDA events on the current stream around the call, then a device-wide synchronize."""

    name = "cuda_event"

    def __init__(self) -> None:
        import torch

        self._torch = torch
        self._start = torch.cuda.Event(enable_timing=True)
        self._end = torch.cuda.Event(enable_timing=True)

    def time_call(self, call: Callable[[], object]) -> int:
        """Time one call with CUDA events (resolution about 0.5 microseconds)."""
        self._start.record()
        call()
        self._end.record()
        self._torch.cuda.synchronize()
        return round(self._start.elapsed_time(self._end) * 1e6)

    def time_block(self, call: Callable[[], object], calls: int) -> int:
        """Time ``calls`` back-to-back calls between two events, with one synchronize at the end."""
        self._start.record()
        for _ in range(calls):
            call()
        self._end.record()
        self._torch.cuda.synchronize()
        return round(self._start.elapsed_time(self._end) * 1e6)


def make_timer(device: str, clock: Clock | None = None) -> IterationTimer:
    """The timer for ``device``: CUDA events on a GPU unless a clock is injected, else the host clock."""
    if is_cuda(device) and clock is None:
        return CudaEventTimer()
    return SyncClockTimer(clock or PerfCounterClock(), device)


class Stopwatch:
    """Measure a block of code with a monotonic clock, optionally synchronising a device at both edges.

    Example::

        with Stopwatch(device="cuda") as sw:
            prepared(inputs)
        first_inference_ms = sw.seconds * 1e3

    Args:
        clock: Time source (default :class:`PerfCounterClock`).
        device: When given, :func:`synchronize` it before starting and before stopping.
    """

    def __init__(self, clock: Clock | None = None, device: str | None = None) -> None:
        self.clock = clock or PerfCounterClock()
        self.device = device
        self._start_ns: int | None = None
        self.ns: int | None = None

    def __enter__(self) -> Stopwatch:
        if self.device is not None:
            synchronize(self.device)
        self._start_ns = self.clock.now_ns()
        self.ns = None
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.device is not None and exc is None:
            synchronize(self.device)
        assert self._start_ns is not None
        self.ns = self.clock.now_ns() - self._start_ns

    @property
    def seconds(self) -> float:
        """Elapsed seconds of the finished block.

        Raises:
            RuntimeError: When read before the block finished.
        """
        if self.ns is None:
            raise RuntimeError("Stopwatch.seconds was read before the `with` block finished")
        return self.ns / 1e9

    def __repr__(self) -> str:
        state: Any = f"{self.seconds:.6f} s" if self.ns is not None else "running"
        return f"Stopwatch({state})"
