"""measure_callable: warm-up, adaptive stopping (with a fake clock), errors, and the result it builds."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest

from mlperf_track import metrics as m
from mlperf_track.engine.clock import FakeClock
from mlperf_track.engine.measure import Measurement, measure_callable
from mlperf_track.engine.monitors import Monitor, MonitorReading, Window
from mlperf_track.errors import MeasurementError, OutOfMemoryError
from mlperf_track.spec import CaseSpec, TimingConfig


class Workload:
    """A callable whose n-th call advances the fake clock by the n-th duration (in ms)."""

    def __init__(self, clock: FakeClock, durations_ms: Iterator[float]) -> None:
        self.clock = clock
        self.durations = durations_ms
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        self.clock.advance(next(self.durations) / 1e3)


def _forever(draw: Callable[[], float]) -> Iterator[float]:
    while True:
        yield draw()


def _measure(work: Workload, timing: TimingConfig, batch_size: int = 4) -> Measurement:
    return measure_callable(work, device="cpu", batch_size=batch_size, timing=timing, monitors=False, clock=work.clock)


def test_low_noise_stops_when_ci_target_is_reached() -> None:
    rng = np.random.default_rng(0)
    work = Workload(FakeClock(), _forever(lambda: float(rng.normal(10.0, 0.2))))
    timing = TimingConfig(warmup_iters=2, warmup_s=0, min_iters=10, max_iters=5000, max_time_s=1e6)
    result = _measure(work, timing)
    assert result.stop_reason == "ci_reached"
    assert result.tags["engine.stop_reason"] == "ci_reached"
    assert 10 <= result.stats.count < 1000
    assert result.stats.median_ci_rel_width <= 0.01
    assert result.stats.p50 == pytest.approx(10.0, rel=0.02)
    assert result.valid and result.invalid_reasons == ()
    assert not any("stopped at" in w for w in (*result.warnings, *result.invalid_reasons))
    assert result.to_result(CaseSpec(model="tiny", batch_size=4)).valid


def test_noisy_samples_hit_max_iters() -> None:
    rng = np.random.default_rng(1)
    work = Workload(FakeClock(), _forever(lambda: float(rng.lognormal(1.0, 1.0))))
    timing = TimingConfig(warmup_iters=0, warmup_s=0, min_iters=10, max_iters=200, max_time_s=1e6)
    result = _measure(work, timing)
    assert result.stop_reason == "max_iters"
    assert result.stats.count == 200
    assert not result.valid
    ci = next(r for r in result.invalid_reasons if "CI" in r)
    assert ci.startswith("stopped at max_iters with the median's 95% CI ") and "above the 1.00% target" in ci
    assert any("coefficient of variation" in r for r in result.invalid_reasons)  # CV 130% > max_cv 50%
    benchmark = result.to_result(CaseSpec(model="tiny", batch_size=4))
    assert benchmark.invalid_reasons == result.invalid_reasons and not benchmark.valid


def test_noisy_samples_hit_max_time() -> None:
    rng = np.random.default_rng(2)
    durations = iter(rng.lognormal(2.0, 1.0, size=100_000).tolist())
    work = Workload(FakeClock(), durations)
    timing = TimingConfig(warmup_iters=0, warmup_s=0, min_iters=10, max_iters=10_000, max_time_s=2.0)
    result = _measure(work, timing)
    assert result.stop_reason == "max_time"
    total_s = sum(result.samples_ms) / 1e3
    assert total_s >= 2.0 and total_s - result.samples_ms[-1] / 1e3 < 2.0


def test_max_time_before_min_iters_warns() -> None:
    work = Workload(FakeClock(), _forever(lambda: 400.0))
    timing = TimingConfig(warmup_iters=0, warmup_s=0, min_iters=10, max_time_s=1.0)
    result = _measure(work, timing)
    assert (result.stop_reason, result.stats.count) == ("max_time", 3)
    assert result.invalid_reasons == ("too few samples for a confidence interval of the median (n=3)",)
    assert result.tags["engine.p50_ci_rel_width"] == "undefined"
    assert not any("inf" in text for text in (*result.warnings, *result.invalid_reasons))


def test_min_time_is_honoured() -> None:
    work = Workload(FakeClock(), _forever(lambda: 1.0))
    timing = TimingConfig(warmup_iters=0, warmup_s=0, min_iters=10, min_time_s=0.2, max_time_s=5.0)
    result = _measure(work, timing)
    assert result.stop_reason == "ci_reached"
    assert result.stats.count == 200  # constant samples meet the CI at once, but the window must last 0.2 s
    assert result.valid


def test_warm_up_by_count() -> None:
    work = Workload(FakeClock(), _forever(lambda: 1.0))
    result = _measure(work, TimingConfig(warmup_iters=7, warmup_s=0, min_iters=10))
    assert result.tags["engine.warmup_iters"] == "7"
    assert work.calls == 7 + result.stats.count


def test_warm_up_by_time() -> None:
    work = Workload(FakeClock(), _forever(lambda: 10.0))
    result = _measure(work, TimingConfig(warmup_iters=1, warmup_s=0.05, min_iters=10))
    assert result.tags["engine.warmup_iters"] == "5"
    assert work.calls == 5 + result.stats.count


def test_metrics_throughput_and_result() -> None:
    durations = iter([5.0] * 3 + [2.0, 4.0] * 1000)
    work = Workload(FakeClock(), durations)
    timing = TimingConfig(warmup_iters=3, warmup_s=0, min_iters=10, max_iters=40, target_rel_ci=0.001)
    result = _measure(work, timing, batch_size=8)
    assert result.stats.count == 40 and result.stop_reason == "max_iters"
    assert result.metrics[m.THROUGHPUT] == pytest.approx(8 * 40 / (40 * 3.0 / 1e3))
    assert result.tags["engine.throughput_method"] == "per_call" and result.blocks == ()
    assert result.metrics[m.LATENCY_MEAN] == pytest.approx(3.0)
    assert result.notes == {"monitors": "disabled by the caller"}
    assert result.tags["engine.timer"] == "fake" and "sw.torch" in result.tags
    case = CaseSpec(model="tiny", batch_size=8)
    benchmark = result.to_result(case)
    assert benchmark.case == case and benchmark.samples_ms == result.samples_ms
    assert benchmark.metrics == result.metrics
    with pytest.raises(ValueError, match="batch_size"):
        result.to_result(CaseSpec(model="tiny", batch_size=1))


def _torch_oom() -> BaseException:
    import torch

    return torch.cuda.OutOfMemoryError("CUDA out of memory")


@pytest.mark.parametrize(
    "make_error",
    [lambda: RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), MemoryError, _torch_oom],
    ids=["runtime-error-message", "memory-error", "torch-oom"],
)
def test_out_of_memory_is_converted(make_error: Callable[[], BaseException]) -> None:
    raised = make_error()

    def call() -> None:
        raise raised

    with pytest.raises(OutOfMemoryError, match="out of memory during warm-up at batch size 2") as info:
        measure_callable(call, device="cpu", batch_size=2, timing=TimingConfig(), monitors=False)
    assert info.value.__cause__ is raised


def test_other_failures_become_measurement_errors() -> None:
    calls = {"n": 0}

    def call() -> None:
        calls["n"] += 1
        if calls["n"] > 3:
            raise ValueError("shape mismatch")

    with pytest.raises(MeasurementError, match="during the timed loop: ValueError: shape mismatch"):
        measure_callable(call, device="cpu", batch_size=1, timing=TimingConfig(warmup_iters=2, warmup_s=0))


class _RecordingMonitor(Monitor):
    name = "recording"
    metric_keys = (m.CPU_UTILIZATION,)

    def __init__(self) -> None:
        self.window: Window | None = None

    def start(self) -> None:
        pass

    def stop(self, window: Window) -> MonitorReading:
        self.window = window
        return MonitorReading(metrics={m.CPU_UTILIZATION: 42.0}, tags={"recording": "yes"})


def test_monitors_see_the_timed_window() -> None:
    monitor = _RecordingMonitor()
    work = Workload(FakeClock(), _forever(lambda: 2.0))
    timing = TimingConfig(warmup_iters=1, warmup_s=0, min_iters=10, min_time_s=0.1)
    result = measure_callable(work, device="cpu", batch_size=3, timing=timing, clock=work.clock, monitor_list=[monitor])
    assert monitor.window == Window(seconds=pytest.approx(0.1), samples=3 * result.stats.count)  # type: ignore[arg-type]
    assert result.metrics[m.CPU_UTILIZATION] == 42.0 and result.tags["recording"] == "yes"
    assert result.tags["engine.monitors"] == "on"


def test_real_clock_with_default_cpu_monitors() -> None:
    data = np.random.default_rng(0).random((64, 64))
    timing = TimingConfig(warmup_iters=2, warmup_s=0, min_iters=5, max_iters=50, max_time_s=0.2)
    result = measure_callable(lambda: data @ data, device="cpu", batch_size=1, timing=timing)
    assert result.tags["engine.timer"] == "perf_counter"
    assert m.CPU_RSS_PEAK in result.metrics and m.CPU_UTILIZATION in result.metrics
    for key in (m.CPU_ENERGY_PER_SAMPLE, m.CPU_POWER_MEAN):
        assert (key in result.metrics) != (key in result.notes)  # measured, or absent with a reason
    assert m.GPU_PEAK_ALLOCATED not in result.metrics
