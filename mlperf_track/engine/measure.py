"""Measure a callable: warm up, run monitors beside an adaptively sized timed loop, summarise.

The timed loop stops at the first of (checked in this order after every call):

* ``ci_reached``: at least ``min_iters`` calls and ``min_time_s`` seconds, and the median's confidence
  interval is narrower than ``target_rel_ci`` of the median (checked on a schedule that grows by 10%, so the
  check costs O(log n) sorts, never inside a timed call);
* ``max_iters``: the iteration cap, even before ``min_time_s`` (so energy may then be left out);
* ``max_time``: the time cap, even before ``min_iters`` (a warning says so).

The reason is recorded as the tag ``engine.stop_reason``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from mlperf_track import metrics as m
from mlperf_track.engine.clock import Clock, PerfCounterClock
from mlperf_track.engine.device import is_out_of_memory, release_memory
from mlperf_track.engine.environment import environment_tags
from mlperf_track.engine.monitors import Monitor, MonitorGroup, MonitorReading, Window, default_monitors
from mlperf_track.engine.result import BenchmarkResult
from mlperf_track.engine.stats import LatencyStats, relative_ci_width
from mlperf_track.engine.timing import IterationTimer, make_timer
from mlperf_track.errors import MeasurementError, MlperfTrackError, OutOfMemoryError
from mlperf_track.spec import CaseSpec, TimingConfig

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

STOP_CI_REACHED = "ci_reached"
STOP_MAX_ITERS = "max_iters"
STOP_MAX_TIME = "max_time"


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
        warnings: High spread, CI target missed, too few iterations.
    """

    samples_ms: tuple[float, ...]
    stats: LatencyStats
    batch_size: int
    stop_reason: str
    metrics: dict[str, float]
    notes: dict[str, str]
    tags: dict[str, str]
    warnings: tuple[str, ...]

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
    """Run the adaptive timed loop; return the samples (ns), the stop reason and the window (ns)."""
    max_ns = round(timing.max_time_s * 1e9)
    min_ns = min(round(timing.min_time_s * 1e9), max_ns)
    samples: list[int] = []
    next_check = timing.min_iters
    start = clock.now_ns()
    while True:
        samples.append(timer.time_call(call))
        count, elapsed = len(samples), clock.now_ns() - start
        at_cap = count >= timing.max_iters or elapsed >= max_ns
        if count >= timing.min_iters and elapsed >= min_ns and (count >= next_check or at_cap):
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


def _warnings(stats: LatencyStats, reason: str, timing: TimingConfig) -> list[str]:
    found = []
    spread = stats.spread_warning(timing.cv_warning)
    if spread:
        found.append(spread)
    if reason != STOP_CI_REACHED:
        found.append(
            f"stopped at {reason} with the median's {timing.confidence:.0%} CI {stats.median_ci_rel_width:.2%} "
            f"wide (target {timing.target_rel_ci:.2%}); the median is less precise than asked"
        )
    if stats.count < timing.min_iters:
        found.append(
            f"only {stats.count} timed calls fit in max_time_s={timing.max_time_s:g} (min_iters={timing.min_iters})"
        )
    return found


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
        timing: Warm-up and stopping rules.
        monitors: Run side monitors (CPU, memory, energy, GPU) during the timed window.
        clock: Time source; by default ``perf_counter`` on the CPU and CUDA events on a GPU. An injected clock
            is used on every device (tests use :class:`~mlperf_track.engine.clock.FakeClock`).
        monitor_list: Monitors to run instead of :func:`~mlperf_track.engine.monitors.default_monitors`.
        sample_interval_s: Period of the monitors' sampling thread.

    Returns:
        The :class:`Measurement`.

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
    except BaseException:
        if group is not None:
            group.stop(Window(seconds=0.0, samples=0))  # stops the sampling thread; the readings are moot
        raise
    window = Window(seconds=window_ns / 1e9, samples=len(samples_ns) * batch_size)
    reading = group.stop(window) if group is not None else MonitorReading(notes={"monitors": "disabled by the caller"})

    samples_ms = tuple(value / 1e6 for value in samples_ns)
    stats = LatencyStats(samples_ms, confidence=timing.confidence)
    metrics = {**stats.as_dict(), m.THROUGHPUT: stats.throughput(batch_size), **reading.metrics}
    tags = {
        **environment_tags(),
        **reading.tags,
        "engine.stop_reason": reason,
        "engine.timer": timer.name,
        "engine.warmup_iters": str(warmup_iters),
        "engine.warmup_s": f"{warmup_s:.4g}",
        "engine.window_s": f"{window.seconds:.4g}",
        "engine.p50_ci_rel_width": f"{stats.median_ci_rel_width:.4g}",
        "engine.monitors": "on" if monitors else "off",
    }
    found = _warnings(stats, reason, timing)
    for warning in found:
        logger.warning("%s", warning)
    return Measurement(
        samples_ms=samples_ms,
        stats=stats,
        batch_size=batch_size,
        stop_reason=reason,
        metrics=metrics,
        notes=dict(reading.notes),
        tags=tags,
        warnings=tuple(found),
    )
