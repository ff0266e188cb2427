"""The parent run's best respects validity and the accuracy limit, and says when nothing qualifies."""

from __future__ import annotations

from dataclasses import replace

import mlflow
import pytest

from mlperf_track import metrics as m
from mlperf_track.engine.result import BenchmarkResult
from mlperf_track.pipeline.config import PipelineConfig
from mlperf_track.pipeline.events import CaseOutcome, PipelineOutcome
from mlperf_track.spec import CaseSpec
from mlperf_track.tracking.listener import MlflowPipelineListener
from mlperf_track.tracking.summary import BEST_PREFIX


def _result(
    variant: str,
    precision: str,
    throughput: float,
    *,
    delta: float | None = None,
    ci: tuple[float, float] | None = None,
    invalid: tuple[str, ...] = (),
) -> BenchmarkResult:
    case = CaseSpec(model="tinycnn", variant=variant, precision=precision, batch_size=4, image_size=8)
    metrics = {m.LATENCY_P50: 4000.0 / throughput, m.THROUGHPUT: throughput, m.CPU_RSS_PEAK: 300.0}
    if delta is not None:
        metrics |= {m.ACCURACY_TOP1: 0.9 + delta, m.ACCURACY_TOP1_DELTA: delta}
    if ci is not None:
        metrics |= {m.ACCURACY_TOP1_DELTA_CI_LOW: ci[0], m.ACCURACY_TOP1_DELTA_CI_HIGH: ci[1]}
    return BenchmarkResult(case, metrics, samples_ms=(1.0, 1.1, 0.9), invalid_reasons=invalid)


def _run(results: list[BenchmarkResult], max_accuracy_drop: float | None = 0.01) -> mlflow.entities.Run:
    config = PipelineConfig(model="tinycnn", device="cpu", image_size=8, max_accuracy_drop=max_accuracy_drop)
    with mlflow.start_run() as parent:
        listener = MlflowPipelineListener(parent.info.run_id, log_model=False)
        listener.on_pipeline_start(config, [result.case for result in results])
        outcome = PipelineOutcome(config)
        for result in results:
            item = CaseOutcome(result.case, result=result)
            outcome.outcomes.append(item)
            listener.on_case_start(result.case)
            listener.on_case_end(item)
        listener.on_pipeline_end(outcome)
    return mlflow.get_run(parent.info.run_id)


BASELINE = _result("baseline", "fp32", 100.0, delta=0.0)
PRUNED_LOSS = _result("pruned", "fp32", 400.0, delta=-0.03, ci=(-0.045, -0.015))
QUANTIZED_SAME = _result("quantized", "int8", 300.0, delta=-0.013, ci=(-0.03, 0.004))
FAST_INVALID = replace(_result("baseline", "bf16", 900.0, delta=0.0, ci=(-0.01, 0.01)), invalid_reasons=("noisy",))


def test_best_skips_invalid_and_accuracy_drops_and_takes_no_measurable_change(tracking: str) -> None:
    parent = _run([BASELINE, FAST_INVALID, PRUNED_LOSS, QUANTIZED_SAME])
    tags, metrics = parent.data.tags, parent.data.metrics
    # -1.3 points is beyond the 1-point limit, but its CI contains 0: no measurable change, so eligible.
    assert tags["best.case"] == QUANTIZED_SAME.case.name
    assert tags["best.status"] == "found"
    assert metrics[f"{BEST_PREFIX}{m.THROUGHPUT}"] == pytest.approx(300.0)
    description = tags["mlflow.note.content"]
    assert "ship quantized/eager/int8 at batch 4: 300.0 samples/s, 3.0x the fp32 eager baseline's" in description
    assert "top-1 -1.3 points (95% CI -3.0..+0.4: no measurable change)" in description
    assert "Not eligible: 1 invalid measurement, 1 accuracy drop (of 4 cases)." in description


def test_without_an_accuracy_limit_the_fastest_valid_case_is_best(tracking: str) -> None:
    parent = _run([BASELINE, FAST_INVALID, PRUNED_LOSS, QUANTIZED_SAME], max_accuracy_drop=None)
    assert parent.data.tags["best.case"] == PRUNED_LOSS.case.name
    assert "Limits: no limits." in parent.data.tags["mlflow.note.content"]


def test_no_eligible_case_is_said_and_no_best_is_tagged(tracking: str) -> None:
    parent = _run([FAST_INVALID, PRUNED_LOSS])
    tags = parent.data.tags
    assert "best.case" not in tags and not any(key.startswith(BEST_PREFIX) for key in parent.data.metrics)
    assert tags["best.status"] == "none_eligible"
    description = tags["mlflow.note.content"]
    assert description.startswith("tinycnn, 8 px, synthetic on cpu: no configuration qualifies (limits: ")
    assert (
        "Fastest excluded: baseline/eager/bf16 at batch 4" in description
        and "invalid measurement: noisy" in description
    )


def test_summary_rows_say_why_a_case_is_not_eligible(tracking: str) -> None:
    import json
    from pathlib import Path

    parent = _run([BASELINE, PRUNED_LOSS])
    path = mlflow.artifacts.download_artifacts(run_id=parent.info.run_id, artifact_path="summary.json")
    table = json.loads(Path(path).read_text())
    rows = {row[0]: dict(zip(table["columns"], row, strict=True)) for row in table["data"]}
    pruned = rows[PRUNED_LOSS.case.name]
    assert pruned["eligible"] is False and "exceeds the 1 point accuracy limit" in pruned["why_not"]
    assert rows[BASELINE.case.name]["eligible"] is True and rows[BASELINE.case.name]["valid"] == "true"
