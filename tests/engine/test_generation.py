"""Generation timing: TTFT, TPOT and tokens/s from a fake clock, validity, and the errors of a broken call."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mlperf_track import metrics as m
from mlperf_track.engine.clock import FakeClock
from mlperf_track.engine.generation import measure_generation
from mlperf_track.errors import ConfigError, MeasurementError
from mlperf_track.spec import TimingConfig

TIMING = TimingConfig(warmup_iters=2, warmup_s=0.0, min_iters=10, max_time_s=60.0)


def fake_generation(clock: FakeClock, prefill_s: float, step_s: float, tokens: int, tail_s: float = 0.0):
    def run(on_token: Callable[[], None]) -> None:
        clock.advance(prefill_s)
        on_token()
        for _ in range(tokens - 1):
            clock.advance(step_s)
            on_token()
        clock.advance(tail_s)

    return run


def test_ttft_tpot_and_tokens_per_second_come_from_the_token_times() -> None:
    clock = FakeClock()
    result = measure_generation(
        fake_generation(clock, 0.020, 0.004, 16, tail_s=0.001),
        device="cpu",
        batch_size=4,
        output_len=16,
        timing=TIMING,
        clock=clock,
        monitors=False,
    )
    metrics = result.metrics
    assert metrics[m.TTFT_P50] == pytest.approx(20.0)
    assert metrics[m.TPOT_P50] == pytest.approx(4.0) and metrics[m.TPOT_P99] == pytest.approx(4.0)
    e2e_s = 0.020 + 15 * 0.004 + 0.001
    assert metrics[m.LATENCY_P50] == pytest.approx(e2e_s * 1e3)
    assert metrics[m.TOKENS_PER_S] == pytest.approx(4 * 16 / e2e_s)
    assert metrics[m.THROUGHPUT] == pytest.approx(4 / e2e_s)
    assert result.valid and result.stop_reason == "ci_reached"
    assert len(result.tpot_ms) == 15 * len(result.samples)


def test_tpot_percentiles_pool_every_gap_of_every_call() -> None:
    clock = FakeClock()
    steps = iter([0.001, 0.003] * 10_000)

    def run(on_token: Callable[[], None]) -> None:
        clock.advance(0.010)
        on_token()
        for _ in range(4):
            clock.advance(next(steps))
            on_token()

    result = measure_generation(
        run, device="cpu", batch_size=1, output_len=5, timing=TIMING, clock=clock, monitors=False
    )
    assert min(result.tpot_ms) == pytest.approx(1.0) and max(result.tpot_ms) == pytest.approx(3.0)
    assert result.metrics[m.TPOT_MEAN] == pytest.approx(2.0)


def test_one_new_token_has_no_tpot_and_says_why() -> None:
    clock = FakeClock()
    result = measure_generation(
        fake_generation(clock, 0.005, 0.0, 1),
        device="cpu",
        batch_size=2,
        output_len=1,
        timing=TIMING,
        clock=clock,
        monitors=False,
    )
    assert m.TPOT_P50 not in result.metrics
    assert "output_len=1" in result.notes[m.TPOT_P50]
    assert result.metrics[m.TTFT_P50] == pytest.approx(5.0)


def test_a_call_that_reports_the_wrong_number_of_tokens_fails_the_measurement() -> None:
    clock = FakeClock()
    with pytest.raises(MeasurementError, match="reported 3 new tokens, expected output_len=4"):
        measure_generation(
            fake_generation(clock, 0.01, 0.01, 3),
            device="cpu",
            batch_size=1,
            output_len=4,
            timing=TIMING,
            clock=clock,
            monitors=False,
        )


def test_a_failing_call_is_a_measurement_error() -> None:
    def run(on_token: Callable[[], None]) -> None:
        raise RuntimeError("boom")

    with pytest.raises(MeasurementError, match="boom"):
        measure_generation(run, device="cpu", batch_size=1, output_len=2, timing=TIMING, monitors=False)


def test_a_noisy_generation_is_reported_invalid() -> None:
    clock = FakeClock()
    durations = iter([0.010, 0.050] * 1000)

    def run(on_token: Callable[[], None]) -> None:
        clock.advance(next(durations))
        on_token()
        clock.advance(0.001)
        on_token()

    timing = TimingConfig(warmup_iters=1, warmup_s=0.0, min_iters=10, max_iters=30, max_time_s=60.0)
    result = measure_generation(
        run, device="cpu", batch_size=1, output_len=2, timing=timing, clock=clock, monitors=False
    )
    assert not result.valid
    assert result.invalid_reasons


@pytest.mark.parametrize(("batch_size", "output_len"), [(0, 4), (1, 0), (1, -3)])
def test_bad_sizes_are_config_errors(batch_size: int, output_len: int) -> None:
    with pytest.raises(ConfigError):
        measure_generation(
            lambda on_token: None, device="cpu", batch_size=batch_size, output_len=output_len, timing=TIMING
        )


def test_the_result_keeps_end_to_end_samples_and_the_case() -> None:
    from mlperf_track.spec import CaseSpec

    clock = FakeClock()
    measurement = measure_generation(
        fake_generation(clock, 0.01, 0.002, 8),
        device="cpu",
        batch_size=1,
        output_len=8,
        timing=TIMING,
        clock=clock,
        monitors=False,
    )
    case = CaseSpec(model="hf-config:gpt2-tiny", prompt_len=16, output_len=8)
    result = measurement.to_result(case)
    assert result.case == case and result.samples_ms == measurement.e2e_ms
    assert result.metrics[m.TTFT_P50] == pytest.approx(10.0)
    assert "p16-o8" in case.name and case.params()["output_len"] == "8"
