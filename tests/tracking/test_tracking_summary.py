"""Summary rows and the best case of the parent run's live table (no MLflow involved)."""

from __future__ import annotations

import math

from tracking_helpers import make_result

from mlperf_track import metrics as m
from mlperf_track.errors import MeasurementError
from mlperf_track.pipeline.events import CaseOutcome
from mlperf_track.tracking.summary import SUMMARY_METRICS, best_metrics, best_result, summary_frame, summary_row


def _rows() -> list[dict[str, object]]:
    results = [
        make_result(batch_size=1, p50=2.0),
        make_result(batch_size=8, p50=8.0),
        make_result(precision="bf16", batch_size=1, p50=1.0),
    ]
    rows = [summary_row(CaseOutcome(case=r.case, result=r), f"run{i}") for i, r in enumerate(results)]
    failed = make_result(runtime="onnxruntime").case
    rows.append(summary_row(CaseOutcome(case=failed, error=MeasurementError("boom | bad"))))
    return rows


def test_rows_carry_metrics_and_errors() -> None:
    rows = _rows()
    assert rows[0]["configuration"] == "baseline/eager/fp32"
    assert rows[1][m.THROUGHPUT] == 1000.0
    assert rows[3]["status"] == "failed" and rows[3]["error"] == "MeasurementError: boom | bad"
    assert math.isnan(float(rows[3][m.LATENCY_P50]))  # type: ignore[arg-type]


def test_best_is_highest_throughput() -> None:
    results = [
        make_result(batch_size=1, p50=2.0),
        make_result(batch_size=8, p50=8.0),
        make_result(batch_size=2, p50=1.0),
    ]
    best = best_result(results)
    assert best is results[2]  # 2000 samples/s against 500 and 1000
    assert best_metrics(best)["best/throughput/samples_per_s"] == 2000.0
    assert best_result([]) is None


def test_frame_keeps_every_row_and_the_column_order() -> None:
    rows = _rows()
    frame = summary_frame(rows)
    assert len(frame) == len(rows)
    assert list(frame.columns)[:7] == [
        "case",
        "variant",
        "runtime",
        "precision",
        "batch_size",
        "configuration",
        "status",
    ]
    assert list(frame.columns)[7 : 7 + len(SUMMARY_METRICS)] == list(SUMMARY_METRICS)
    assert frame["status"].tolist() == ["ok", "ok", "ok", "failed"]


def test_best_skips_invalid_results_and_respects_the_accuracy_limit() -> None:
    from dataclasses import replace

    from mlperf_track.engine.eligibility import Limits

    fast_invalid = replace(make_result(batch_size=8, p50=1.0), invalid_reasons=("spread 40% > 10%",))
    quantized = make_result(variant="quantized", precision="int8", batch_size=4, p50=1.0)
    baseline = make_result(batch_size=2, p50=1.0)
    results = [fast_invalid, quantized, baseline]
    assert best_result(results) is quantized  # no limit: the fastest valid result
    assert best_result(results, Limits(max_accuracy_drop=0.01)) is baseline  # int8 without a delta: no accuracy
    assert best_result([fast_invalid]) is None
    row = summary_row(CaseOutcome(case=fast_invalid.case, result=fast_invalid), "r", Limits())
    assert row["valid"] == "false" and row["eligible"] is False and "spread 40%" in row["why_not"]
