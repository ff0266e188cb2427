"""What run/bench print: cases sorted by batch size then throughput, a verdict column, and the answer last."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from mlperf_track import metrics as m
from mlperf_track.cli import console
from mlperf_track.engine.result import BenchmarkResult
from mlperf_track.errors import OutOfMemoryError
from mlperf_track.pipeline.config import PipelineConfig
from mlperf_track.pipeline.events import CaseOutcome, PipelineOutcome
from mlperf_track.spec import CaseSpec


def _outcome(variant: str, precision: str, batch: int, throughput: float, **extra: float) -> CaseOutcome:
    case = CaseSpec("resnet18", variant, "eager", precision, batch, "cpu", 64, "digits")
    metrics = {m.THROUGHPUT: throughput, m.LATENCY_P50: 1000.0 * batch / throughput, **extra}
    return CaseOutcome(case, result=BenchmarkResult(case, metrics, samples_ms=(1.0, 2.0)))


def _pipeline() -> PipelineOutcome:
    config = PipelineConfig(model="resnet18", device="cpu", image_size=64, dataset="digits", batch_sizes=(1, 8))
    outcomes = [
        _outcome("baseline", "fp32", 1, 50.0, **{m.ACCURACY_TOP1_DELTA: 0.0}),
        _outcome("quantized", "int8", 8, 400.0, **{m.ACCURACY_TOP1_DELTA: -0.05}),  # beyond the limit
        _outcome("baseline", "fp32", 8, 100.0, **{m.ACCURACY_TOP1_DELTA: 0.0}),
        _outcome("quantized", "int8", 1, 90.0, **{m.ACCURACY_TOP1_DELTA: -0.002}),
    ]
    failed = CaseSpec("resnet18", "pruned", "eager", "fp32", 8, "cpu", 64, "digits")
    outcomes.append(CaseOutcome(failed, error=OutOfMemoryError("needs 9 GB")))
    return PipelineOutcome(config, outcomes)


def _text(renderable: object) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=250, color_system=None).print(renderable)
    return buffer.getvalue()


def test_rows_are_sorted_by_batch_size_then_throughput_with_a_verdict() -> None:
    text = _text(console.render_table(_pipeline()))
    order = [
        "quantized-eager-int8-bs1",
        "baseline-eager-fp32-bs1",
        "quantized-eager-int8-bs8",
        "baseline-eager-fp32-bs8",
        "pruned-eager-fp32-bs8",
    ]
    positions = [text.index(name) for name in order]
    assert positions == sorted(positions)
    lines = {name: next(line for line in text.splitlines() if name in line) for name in order}
    assert "runner-up" in lines["quantized-eager-int8-bs1"]
    assert "accuracy drop" in lines["quantized-eager-int8-bs8"]
    assert "recommended" in lines["baseline-eager-fp32-bs8"]
    assert "out of memory" in lines["pruned-eager-fp32-bs8"]
    assert "-5.0" in lines["quantized-eager-int8-bs8"]  # the delta in points


def test_the_answer_is_printed_last_and_names_the_question(monkeypatch: pytest.MonkeyPatch) -> None:
    answer = console.outcome_recommendation(_pipeline())
    assert answer.lines[0].startswith("resnet18, 64 px, digits on cpu: ship baseline/eager/fp32 at batch 8")
    assert answer.lines[1].startswith("Runner-up (next fastest): quantized/eager/int8 at batch 1: 90.0 samples/s, 1.8x")
    buffer = io.StringIO()
    monkeypatch.setattr(console, "make_console", lambda: Console(file=buffer, width=300, color_system=None))
    console.print_outcome(_pipeline())
    printed = buffer.getvalue()
    assert "pruned-eager-fp32-bs8 failed: OutOfMemoryError: needs 9 GB" in printed
    assert printed.rstrip().splitlines()[-1].startswith("╰")  # the recommendation box closes the output
    assert printed.index("Recommendation") > printed.index("pruned-eager-fp32-bs8 failed")
    assert "Not eligible: 1 out of memory, 1 accuracy drop (of 5 cases)." in printed
