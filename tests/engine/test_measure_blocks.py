"""Block timing for throughput: blocks of back-to-back calls, one sync per block, the method recorded."""

from __future__ import annotations

import pytest

from mlperf_track import metrics as m
from mlperf_track.engine import timing as timing_module
from mlperf_track.engine.clock import FakeClock
from mlperf_track.engine.measure import block_size, measure_callable
from mlperf_track.engine.monitors import Monitor, MonitorReading, Window
from mlperf_track.engine.timing import SyncClockTimer
from mlperf_track.spec import CaseSpec, TimingConfig


class Phased:
    """A call that takes ``per_call_ms`` for its first ``switch_after`` calls and ``later_ms`` after."""

    def __init__(self, clock: FakeClock, per_call_ms: float, later_ms: float, switch_after: int) -> None:
        self.clock, self.per_call_ms, self.later_ms, self.switch_after = clock, per_call_ms, later_ms, switch_after
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        self.clock.advance((self.per_call_ms if self.calls <= self.switch_after else self.later_ms) / 1e3)


BLOCK = TimingConfig(
    warmup_iters=2,
    warmup_s=0,
    min_iters=10,
    target_rel_ci=0.05,
    throughput_method="block",
    block_s=0.05,
    throughput_time_s=0.2,
)


def test_throughput_comes_from_the_blocks_and_latency_from_per_call_samples() -> None:
    # Per call 2 ms (with a sync after each); back to back 1 ms (the device overlaps work, as a GPU queue does).
    work = Phased(FakeClock(), per_call_ms=2.0, later_ms=1.0, switch_after=2 + 10)
    result = measure_callable(work, device="cpu", batch_size=4, timing=BLOCK, monitors=False, clock=work.clock)
    assert result.stats.count == 10 and result.stats.p50 == pytest.approx(2.0)
    assert result.tags["engine.throughput_method"] == "block:25"  # 50 ms blocks of 2 ms calls
    assert result.blocks == ((25, 25.0),) * 8  # at 1 ms each, 8 blocks fill the 0.2 s phase
    assert result.metrics[m.THROUGHPUT] == pytest.approx(4 / 1e-3)  # not 4 / 2 ms
    assert float(result.tags["engine.throughput_window_s"]) == pytest.approx(0.2)
    benchmark = result.to_result(CaseSpec(model="tiny", batch_size=4))
    assert benchmark.blocks == result.blocks
    assert type(benchmark).from_dict(benchmark.to_dict()).blocks == result.blocks


def test_at_least_three_blocks() -> None:
    work = Phased(FakeClock(), 2.0, 2.0, 0)
    timing = TimingConfig(**{**BLOCK.to_dict(), "throughput_time_s": 0.001})
    result = measure_callable(work, device="cpu", batch_size=1, timing=timing, monitors=False, clock=work.clock)
    assert len(result.blocks) == 3


def test_slow_calls_reuse_the_per_call_samples_as_blocks_of_one() -> None:
    work = Phased(FakeClock(), 80.0, 80.0, 0)
    result = measure_callable(work, device="cpu", batch_size=2, timing=BLOCK, monitors=False, clock=work.clock)
    assert result.tags["engine.throughput_method"] == "block:1"
    assert work.calls == 2 + result.stats.count  # no extra phase ran
    assert result.blocks == tuple((1, value) for value in result.samples_ms)
    assert result.metrics[m.THROUGHPUT] == pytest.approx(2 / 0.08)


def test_auto_is_per_call_on_cpu_and_block_on_cuda() -> None:
    timing = TimingConfig()
    assert timing.throughput_method_for("cpu") == "per_call"
    assert timing.throughput_method_for("cuda") == "block"
    assert TimingConfig(throughput_method="per_call").throughput_method_for("cuda") == "per_call"


@pytest.mark.parametrize(("p50_ms", "expected"), [(2.0, 25), (0.01, 5000), (50.0, 1), (500.0, 1), (0.0, 1)])
def test_block_size(p50_ms: float, expected: int) -> None:
    assert block_size(p50_ms, 0.05) == expected


def test_a_block_synchronises_once_at_the_end(monkeypatch: pytest.MonkeyPatch) -> None:
    syncs: list[str] = []
    monkeypatch.setattr(timing_module, "synchronize", syncs.append)  # a fake device: count the syncs
    clock = FakeClock()
    timer = SyncClockTimer(clock, "cuda")
    calls: list[int] = []
    elapsed = timer.time_block(lambda: (calls.append(1), clock.advance(0.001)), 7)
    assert (len(calls), syncs, elapsed) == (7, ["cuda"], 7_000_000)
    timer.time_call(lambda: clock.advance(0.001))
    assert syncs == ["cuda", "cuda"]


class _Recording(Monitor):
    name = "recording"
    metric_keys = ()

    def __init__(self) -> None:
        self.window: Window | None = None

    def start(self) -> None:
        pass

    def stop(self, window: Window) -> MonitorReading:
        self.window = window
        return MonitorReading()


def test_monitors_span_both_phases() -> None:
    monitor = _Recording()
    work = Phased(FakeClock(), 2.0, 2.0, 0)
    result = measure_callable(work, device="cpu", batch_size=3, timing=BLOCK, clock=work.clock, monitor_list=[monitor])
    block_calls = sum(calls for calls, _ in result.blocks)
    assert monitor.window is not None
    assert monitor.window.samples == 3 * (result.stats.count + block_calls)
    assert monitor.window.seconds == pytest.approx((sum(result.samples_ms) + sum(ms for _, ms in result.blocks)) / 1e3)
