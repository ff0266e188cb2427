"""Measure a callable: warm up, run monitors beside an adaptively sized timed loop, summarise.

The per-call timed loop stops at the first of (checked in this order after every call):

* ``ci_reached``: at least ``min_iters`` calls and ``min_time_s`` seconds of measured time (the sum of the
  timed calls), and the median's confidence interval is narrower than ``target_rel_ci`` of the median
  (checked on a schedule that grows by 10%, so the check costs O(log n) sorts, never inside a timed call);
* ``max_iters``: the iteration cap, even before ``min_time_s`` (the result is then invalid and says so);
* ``max_time``: the time cap, even before ``min_iters`` (likewise).

The reason is recorded as the tag ``engine.stop_reason``. Latency percentiles come from those per-call
samples. Throughput comes from them too (``per_call``) or from a block-timed phase that follows
(``block:N``: N back-to-back calls per clock read, one device sync per block); the tag
``engine.throughput_method`` says which. The monitors span both phases. The validity verdict
(:mod:`mlperf_track.engine.validity`) is computed from the samples when asked for.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TypeVar

import numpy as np

from mlperf_track import metrics as m
from mlperf_track.engine.clock import Clock, PerfCounterClock
from mlperf_track.engine.device import is_out_of_memory, release_memory
from mlperf_track.engine.environment import environment_tags
from mlperf_track.engine.monitors import Monitor, MonitorGroup, MonitorReading, Window, default_monitors
from mlperf_track.engine.result import BenchmarkResult, Block, block_throughput
from mlperf_track.engine.stats import LatencyStats, relative_ci_width
from mlperf_track.engine.timing import IterationTimer, make_timer
from mlperf_track.engine.validity import invalid_reasons
from mlperf_track.errors import MeasurementError, MlperfTrackError, OutOfMemoryError
from mlperf_track.spec import CaseSpec, TimingConfig

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

STOP_CI_REACHED = "ci_reached"
STOP_MAX_ITERS = "max_iters"
STOP_MAX_TIME = "max_time"
#: Fewest blocks the block-timed throughput phase runs.
MIN_BLOCKS = 3


@dataclass(frozen=True)
class Measurement:
    """The outcome of :func:`measure_callable`.

    Attributes:
        samples_ms: Per-call latencies of the timed window, in call order.
        stats: Their statistics.
        batch_size: Samples per call.
        stop_reason: ``ci_reached``, ``max_iters`` or ``max_time``.
        metrics: ``latency/*``, ``throughput/samples_per_s`` and the monitors' metrics.
        notes: Why a metric is absent.
        tags: How it was measured (``engine.*``), monitor facts, hardware and software.
        warnings: Advice that does not make the measurement invalid (spread above ``cv_warning``, a time cap
            below the minimum duration).
        timing: The settings it was measured with (the validity thresholds).
        blocks: ``(calls, milliseconds)`` of each block of the block-timed throughput phase; empty when
            throughput came from the per-call samples.
    """

    samples_ms: tuple[float, ...]
    stats: LatencyStats
    batch_size: int
    stop_reason: str
    metrics: dict[str, float]
    notes: dict[str, str]
    tags: dict[str, str]
    warnings: tuple[str, ...]
    timing: TimingConfig = field(default_factory=TimingConfig)
    blocks: tuple[Block, ...] = ()

    @cached_property
    def invalid_reasons(self) -> tuple[str, ...]:
        """Why the measurement is not usable (empty when valid), computed from the samples."""
        return invalid_reasons(self.samples_ms, self.timing, stop_reason=self.stop_reason)

    @property
    def valid(self) -> bool:
        """Whether no validity rule is broken."""
        return not self.invalid_reasons

    def to_result(self, case: CaseSpec) -> BenchmarkResult:
        """This measurement as the :class:`BenchmarkResult` of ``case``.

        Raises:
            ValueError: When ``case.batch_size`` is not the batch size that was measured.
        """
        if case.batch_size != self.batch_size:
            raise ValueError(f"case batch_size {case.batch_size} != measured batch_size {self.batch_size}")
        return BenchmarkResult(
            case=case,
            metrics=dict(self.metrics),
            samples_ms=self.samples_ms,
            tags=dict(self.tags),
            notes=dict(self.notes),
            warnings=self.warnings,
            invalid_reasons=self.invalid_reasons,
            blocks=self.blocks,
        )


def _warm_up(
    call: Callable[[], object], timer: IterationTimer, clock: Clock, timing: TimingConfig
) -> tuple[int, float]:
    """Call until both ``warmup_iters`` calls and ``warmup_s`` seconds are done; return both."""
    start, count, min_ns = clock.now_ns(), 0, round(timing.warmup_s * 1e9)
    while count < timing.warmup_iters or clock.now_ns() - start < min_ns:
        timer.time_call(call)
        count += 1
    return count, (clock.now_ns() - start) / 1e9


def _timed_loop(
    call: Callable[[], object], timer: IterationTimer, clock: Clock, timing: TimingConfig
) -> tuple[list[int], str, int]:
    """Run the adaptive timed loop; return the samples (ns), the stop reason and the window (ns).

    The minimum is on measured time (the sum of the samples), so it is the same quantity the validity
    rule checks; the cap is on wall time.
    """
    max_ns = round(timing.max_time_s * 1e9)
    min_ns = round(timing.effective_min_time_s * 1e9)
    samples: list[int] = []
    measured_ns = 0
    next_check = timing.min_iters
    start = clock.now_ns()
    while True:
        sample = timer.time_call(call)
        samples.append(sample)
        measured_ns += sample
        count, elapsed = len(samples), clock.now_ns() - start
        at_cap = count >= timing.max_iters or elapsed >= max_ns
        if count >= timing.min_iters and measured_ns >= min_ns and (count >= next_check or at_cap):
            if (
                relative_ci_width(np.sort(np.asarray(samples, dtype=np.float64)), timing.confidence)
                <= timing.target_rel_ci
            ):
                return samples, STOP_CI_REACHED, elapsed
            next_check = count + max(1, count // 10)
        if count >= timing.max_iters:
            return samples, STOP_MAX_ITERS, elapsed
        if elapsed >= max_ns:
            return samples, STOP_MAX_TIME, elapsed


def block_size(p50_ms: float, block_s: float) -> int:
    """Calls per block so that a block lasts about ``block_s`` (at least 1)."""
    if p50_ms <= 0:
        return 1
    return max(1, math.ceil(block_s * 1e3 / p50_ms))


def _block_phase(
    call: Callable[[], object], timer: IterationTimer, clock: Clock, timing: TimingConfig, calls: int
) -> tuple[list[Block], int]:
    """Run blocks of ``calls`` back-to-back calls for ``throughput_time_s`` (at least :data:`MIN_BLOCKS`)."""
    budget_ns = round(timing.throughput_time_s * 1e9)
    blocks: list[Block] = []
    start = clock.now_ns()
    while len(blocks) < MIN_BLOCKS or clock.now_ns() - start < budget_ns:
        blocks.append((calls, timer.time_block(call, calls) / 1e6))
    return blocks, clock.now_ns() - start


def _run_guarded(phase: str, device: str, batch_size: int, body: Callable[[], _T]) -> _T:
    """Run ``body``; turn allocation failures into OutOfMemoryError and other failures into MeasurementError."""
    try:
        return body()
    except MlperfTrackError:
        raise
    except Exception as error:
        if is_out_of_memory(error):
            release_memory(device)
            first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise OutOfMemoryError(
                f"out of memory during {phase} at batch size {batch_size} on {device}: {first_line}; "
                "try a smaller batch size"
            ) from error
        raise MeasurementError(f"the measured call failed during {phase}: {type(error).__name__}: {error}") from error


def _warnings(stats: LatencyStats, timing: TimingConfig) -> list[str]:
    """Advice that does not invalidate the measurement (the validity rules cover the rest)."""
    found = []
    spread = stats.spread_warning(timing.cv_warning) if stats.cv <= timing.max_cv else None  # above: invalid
    if spread:
        found.append(spread)
    if timing.max_time_s <= timing.min_time_s:
        found.append(
            f"max_time_s={timing.max_time_s:g} is not above the minimum measured duration min_time_s="
            f"{timing.min_time_s:g}: the window was shortened to it, so runs may repeat less closely"
        )
    return found


def _throughput(
    call: Callable[[], object],
    timer: IterationTimer,
    clock: Clock,
    timing: TimingConfig,
    *,
    device: str,
    samples_ms: Sequence[float],
) -> tuple[list[Block], int, str]:
    """The block-timed phase when the method is ``block``: its blocks, its window (ns) and the method tag."""
    if timing.throughput_method_for(device) != "block":
        return [], 0, "per_call"
    calls = block_size(float(np.median(samples_ms)), timing.block_s)
    if calls == 1:
        # A block of one call is exactly a per-call sample (one call, one sync): reuse them, run nothing more.
        return [(1, value) for value in samples_ms], 0, "block:1"
    blocks, window_ns = _block_phase(call, timer, clock, timing, calls)
    return blocks, window_ns, f"block:{calls}"


def measure_callable(
    call: Callable[[], object],
    *,
    device: str,
    batch_size: int,
    timing: TimingConfig,
    monitors: bool = True,
    clock: Clock | None = None,
    monitor_list: Sequence[Monitor] | None = None,
    sample_interval_s: float = 0.05,
) -> Measurement:
    """Warm up ``call``, time it adaptively with monitors running, and summarise.

    Args:
        call: Runs one batch; may return before a GPU finishes (the engine synchronises).
        device: ``cpu`` or ``cuda``.
        batch_size: Samples per call (for throughput and per-sample energy).
        timing: Warm-up, stopping and validity rules, and the throughput method.
        monitors: Run side monitors (CPU, memory, energy, GPU) during the timed window.
        clock: Time source; by default ``perf_counter`` on the CPU and CUDA events on a GPU. An injected clock
            is used on every device (tests use :class:`~mlperf_track.engine.clock.FakeClock`).
        monitor_list: Monitors to run instead of :func:`~mlperf_track.engine.monitors.default_monitors`.
        sample_interval_s: Period of the monitors' sampling thread.

    Returns:
        The :class:`Measurement`; its ``invalid_reasons`` say whether it is usable.

    Raises:
        OutOfMemoryError: When ``call`` runs out of device or host memory.
        MeasurementError: When ``call`` fails otherwise.
    """
    timer = make_timer(device, clock)
    wall = clock or PerfCounterClock()
    warmup_iters, warmup_s = _run_guarded("warm-up", device, batch_size, lambda: _warm_up(call, timer, wall, timing))
    group = None
    if monitors:
        group = MonitorGroup(monitor_list if monitor_list is not None else default_monitors(device), sample_interval_s)
        group.start()
    try:
        samples_ns, reason, window_ns = _run_guarded(
            "the timed loop", device, batch_size, lambda: _timed_loop(call, timer, wall, timing)
        )
        samples_ms = tuple(value / 1e6 for value in samples_ns)
        blocks, block_ns, method = _run_guarded(
            "the block-timed throughput phase",
            device,
            batch_size,
            lambda: _throughput(call, timer, wall, timing, device=device, samples_ms=samples_ms),
        )
    except BaseException:
        if group is not None:
            group.stop(Window(seconds=0.0, samples=0))  # stops the sampling thread; the readings are moot
        raise
    block_calls = sum(calls for calls, _ in blocks) if block_ns else 0
    window = Window(seconds=(window_ns + block_ns) / 1e9, samples=(len(samples_ns) + block_calls) * batch_size)
    reading = group.stop(window) if group is not None else MonitorReading(notes={"monitors": "disabled by the caller"})

    stats = LatencyStats(samples_ms, confidence=timing.confidence)
    throughput = block_throughput(blocks, batch_size) if blocks else stats.throughput(batch_size)
    metrics = {**stats.as_dict(), m.THROUGHPUT: throughput, **reading.metrics}
    tags = {
        **environment_tags(),
        **reading.tags,
        "engine.stop_reason": reason,
        "engine.timer": timer.name,
        "engine.warmup_iters": str(warmup_iters),
        "engine.warmup_s": f"{warmup_s:.4g}",
        "engine.window_s": f"{window_ns / 1e9:.4g}",
        "engine.p50_ci_rel_width": f"{stats.median_ci_rel_width:.4g}" if stats.median_ci else "undefined",
        "engine.throughput_method": method,
        "engine.monitors": "on" if monitors else "off",
    }
    if block_ns:
        tags["engine.throughput_window_s"] = f"{block_ns / 1e9:.4g}"
    measurement = Measurement(
        samples_ms=samples_ms,
        stats=stats,
        batch_size=batch_size,
        stop_reason=reason,
        metrics=metrics,
        notes=dict(reading.notes),
        tags=tags,
        warnings=tuple(_warnings(stats, timing)),
        timing=timing,
        blocks=tuple(blocks),
    )
    for message in measurement.warnings:
        logger.warning("%s", message)
    if measurement.invalid_reasons:
        logger.warning("measurement not valid: %s", "; ".join(measurement.invalid_reasons))
    return measurement
