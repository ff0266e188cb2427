"""Measure text generation: time to first token, time per output token, tokens per second.

The engine measures callables, and generation is one too: ``run(on_token)`` generates once (a batch of
prompts to ``output_len`` new tokens each) and calls ``on_token()`` as soon as each new token exists. The
engine owns the clock: it reads it before the call, in every ``on_token`` (after synchronising the device, so
a GPU token is really there) and after the call returns. From one call:

- time to first token (TTFT) = first ``on_token`` - start: the prefill of the prompt plus the first token;
- time per output token (TPOT) = the gaps between consecutive ``on_token`` reads (``output_len - 1`` of them);
- end-to-end latency = return - start.

Calls are warmed up and then repeated under the same adaptive rule as :func:`~.measure.measure_callable`
(on the end-to-end latencies: the median's confidence interval, minimum time and iterations, caps), with the
monitors running; the validity verdict is computed from the end-to-end samples. TPOT percentiles pool the
gaps of every timed call. The clock is injectable (tests drive it with
:class:`~mlperf_track.engine.clock.FakeClock`).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from mlperf_track import metrics as m
from mlperf_track.engine.clock import Clock, PerfCounterClock, clock_name
from mlperf_track.engine.device import synchronize
from mlperf_track.engine.environment import environment_tags
from mlperf_track.engine.measure import _run_guarded, _timed_loop, _warm_up, _warnings
from mlperf_track.engine.monitors import Monitor, MonitorGroup, MonitorReading, Window, default_monitors
from mlperf_track.engine.result import BenchmarkResult
from mlperf_track.engine.stats import LatencyStats
from mlperf_track.engine.validity import invalid_reasons
from mlperf_track.errors import MeasurementError
from mlperf_track.spec import CaseSpec, TimingConfig, check_positive_int

logger = logging.getLogger(__name__)

#: ``run(on_token)``: one generation call; ``on_token()`` is called once per new token, as it appears.
GenerationRun = Callable[[Callable[[], None]], object]


@dataclass(frozen=True)
class GenerationSample:
    """The times of one generation call, in nanoseconds."""

    ttft_ns: int
    gaps_ns: tuple[int, ...]
    e2e_ns: int


class GenerationTimer:
    """Times generation calls: one :class:`GenerationSample` per call, kept in :attr:`samples`.

    :meth:`time_generation` returns the end-to-end nanoseconds, so through :class:`_Adapter` the engine's
    warm-up and adaptive loop (:mod:`.measure`) drive generation calls unchanged.

    Args:
        clock: The time source.
        device: Synchronised before the start, at every token and at the end.
        output_len: New tokens each call must report.
    """

    def __init__(self, clock: Clock, device: str, output_len: int) -> None:
        self.clock = clock
        self.device = device
        self.output_len = output_len
        self.name = clock_name(clock)
        self.samples: list[GenerationSample] = []

    def time_generation(self, run: GenerationRun) -> int:
        """Run one generation call, record its sample, return its end-to-end nanoseconds.

        Raises:
            MeasurementError: The call reported another number of tokens than ``output_len``.
        """
        marks: list[int] = []

        def on_token() -> None:
            synchronize(self.device)
            marks.append(self.clock.now_ns())

        synchronize(self.device)
        start = self.clock.now_ns()
        run(on_token)
        synchronize(self.device)
        end = self.clock.now_ns()
        if len(marks) != self.output_len:
            raise MeasurementError(
                f"the generation call reported {len(marks)} new tokens, expected output_len={self.output_len}"
            )
        gaps = tuple(later - earlier for earlier, later in itertools.pairwise(marks))
        self.samples.append(GenerationSample(marks[0] - start, gaps, end - start))
        return end - start


class _Adapter:
    """Presents ``run`` to the engine's loops as a plain call timed by a :class:`GenerationTimer`."""

    def __init__(self, timer: GenerationTimer, run: GenerationRun) -> None:
        self.timer, self.run, self.name = timer, run, timer.name

    def time_call(self, call: Callable[[], object]) -> int:
        return self.timer.time_generation(self.run)

    def time_block(self, call: Callable[[], object], calls: int) -> int:
        raise NotImplementedError("generation is timed call by call (throughput from the per-call samples)")


@dataclass(frozen=True)
class GenerationMeasurement:
    """The outcome of :func:`measure_generation`.

    Attributes:
        samples: The timed calls' samples, in call order.
        batch_size: Sequences per call.
        output_len: New tokens per sequence.
        stop_reason: ``ci_reached``, ``max_iters`` or ``max_time``.
        metrics: ``latency/*`` (per call), ``latency/ttft_*``, ``latency/tpot_*``, ``throughput/*`` and the
            monitors' metrics.
        notes: Why a metric is absent.
        tags: How it was measured.
        warnings: Advice that does not invalidate the measurement.
        timing: The settings (the validity thresholds).
    """

    samples: tuple[GenerationSample, ...]
    batch_size: int
    output_len: int
    stop_reason: str
    metrics: dict[str, float]
    notes: dict[str, str]
    tags: dict[str, str]
    warnings: tuple[str, ...]
    timing: TimingConfig = field(default_factory=TimingConfig)

    @property
    def e2e_ms(self) -> tuple[float, ...]:
        """End-to-end latency of each timed call."""
        return tuple(sample.e2e_ns / 1e6 for sample in self.samples)

    @property
    def ttft_ms(self) -> tuple[float, ...]:
        """Time to first token of each timed call."""
        return tuple(sample.ttft_ns / 1e6 for sample in self.samples)

    @property
    def tpot_ms(self) -> tuple[float, ...]:
        """Every gap between consecutive tokens of every timed call, in call order."""
        return tuple(gap / 1e6 for sample in self.samples for gap in sample.gaps_ns)

    @cached_property
    def invalid_reasons(self) -> tuple[str, ...]:
        """Why the measurement is not usable (empty when valid), from the end-to-end samples."""
        return invalid_reasons(self.e2e_ms, self.timing, stop_reason=self.stop_reason)

    @property
    def valid(self) -> bool:
        """Whether no validity rule is broken."""
        return not self.invalid_reasons

    def to_result(self, case: CaseSpec) -> BenchmarkResult:
        """This measurement as ``case``'s result; its ``samples_ms`` are the end-to-end latencies."""
        return BenchmarkResult(
            case=case,
            metrics=dict(self.metrics),
            samples_ms=self.e2e_ms,
            tags=dict(self.tags),
            notes=dict(self.notes),
            warnings=self.warnings,
            invalid_reasons=self.invalid_reasons,
        )


def _percentiles(stats: LatencyStats, keys: tuple[str, str, str, str]) -> dict[str, float]:
    return dict(zip(keys, (stats.p50, stats.p90, stats.p99, stats.mean), strict=True))


def generation_metrics(
    samples: Sequence[GenerationSample], batch_size: int, output_len: int, confidence: float = 0.95
) -> tuple[dict[str, float], dict[str, str]]:
    """Latency, TTFT, TPOT and throughput metrics of timed generation calls (and notes for absent ones)."""
    e2e = LatencyStats([sample.e2e_ns / 1e6 for sample in samples], confidence=confidence)
    ttft = LatencyStats([sample.ttft_ns / 1e6 for sample in samples], confidence=confidence)
    metrics = {
        **e2e.as_dict(),
        m.THROUGHPUT: e2e.throughput(batch_size),
        m.TOKENS_PER_S: e2e.throughput(batch_size * output_len),
        **_percentiles(ttft, (m.TTFT_P50, m.TTFT_P90, m.TTFT_P99, m.TTFT_MEAN)),
    }
    notes: dict[str, str] = {}
    gaps = [gap / 1e6 for sample in samples for gap in sample.gaps_ns]
    if gaps:
        metrics.update(_percentiles(LatencyStats(gaps), (m.TPOT_P50, m.TPOT_P90, m.TPOT_P99, m.TPOT_MEAN)))
    else:
        notes[m.TPOT_P50] = "output_len=1: one new token per call, so no time between tokens"
    return metrics, notes


def measure_generation(
    run: GenerationRun,
    *,
    device: str,
    batch_size: int,
    output_len: int,
    timing: TimingConfig,
    monitors: bool = True,
    clock: Clock | None = None,
    monitor_list: Sequence[Monitor] | None = None,
    sample_interval_s: float = 0.05,
) -> GenerationMeasurement:
    """Warm up ``run``, time generation calls adaptively with monitors running, and summarise.

    Args:
        run: One generation call (see the module docstring).
        device: ``cpu`` or ``cuda``.
        batch_size: Sequences per call.
        output_len: New tokens per sequence (``on_token`` calls per generation call).
        timing: Warm-up, stopping and validity rules (as for :func:`~.measure.measure_callable`).
        monitors: Run the side monitors during the timed calls.
        clock: Time source (default ``perf_counter``; the device is synchronised before each read).
        monitor_list: Monitors instead of :func:`~.monitors.default_monitors`.
        sample_interval_s: Period of the monitors' sampling thread.

    Raises:
        ConfigError: ``batch_size`` or ``output_len`` is not a positive integer.
        OutOfMemoryError: A call ran out of memory.
        MeasurementError: A call failed, or reported the wrong number of tokens.
    """
    check_positive_int("batch_size", batch_size)
    check_positive_int("output_len", output_len)
    wall = clock or PerfCounterClock()
    warm = GenerationTimer(wall, device, output_len)
    warmup_iters, warmup_s = _run_guarded(
        "warm-up", device, batch_size, lambda: _warm_up(lambda: None, _Adapter(warm, run), wall, timing)
    )
    timer = GenerationTimer(wall, device, output_len)
    group = None
    if monitors:
        group = MonitorGroup(monitor_list if monitor_list is not None else default_monitors(device), sample_interval_s)
        group.start()
    try:
        _, reason, window_ns = _run_guarded(
            "the timed generation calls",
            device,
            batch_size,
            lambda: _timed_loop(lambda: None, _Adapter(timer, run), wall, timing),
        )
    except BaseException:
        if group is not None:
            group.stop(Window(seconds=0.0, samples=0))
        raise
    window = Window(seconds=window_ns / 1e9, samples=len(timer.samples) * batch_size)
    reading = group.stop(window) if group is not None else MonitorReading(notes={"monitors": "disabled by the caller"})
    metrics, notes = generation_metrics(timer.samples, batch_size, output_len, timing.confidence)
    stats = LatencyStats([sample.e2e_ns / 1e6 for sample in timer.samples], confidence=timing.confidence)
    tags = {
        **environment_tags(),
        **reading.tags,
        "engine.stop_reason": reason,
        "engine.timer": f"{timer.name} (read at every token, after a device sync)",
        "engine.warmup_iters": str(warmup_iters),
        "engine.warmup_s": f"{warmup_s:.4g}",
        "engine.window_s": f"{window_ns / 1e9:.4g}",
        "engine.p50_ci_rel_width": f"{stats.median_ci_rel_width:.4g}" if stats.median_ci else "undefined",
        "engine.throughput_method": "per_call",
        "engine.monitors": "on" if monitors else "off",
        "engine.workload": "generation",
    }
    measurement = GenerationMeasurement(
        samples=tuple(timer.samples),
        batch_size=batch_size,
        output_len=output_len,
        stop_reason=reason,
        metrics={**metrics, **reading.metrics},
        notes={**notes, **reading.notes},
        tags=tags,
        warnings=tuple(_warnings(stats, timing)),
        timing=timing,
    )
    for message in measurement.warnings:
        logger.warning("%s", message)
    if measurement.invalid_reasons:
        logger.warning("generation measurement not valid: %s", "; ".join(measurement.invalid_reasons))
    return measurement
