"""Summary rows, the best case, figures and the Markdown/HTML report (no MLflow involved)."""

from __future__ import annotations

import math

from tracking_helpers import make_result

from mlperf_track import metrics as m
from mlperf_track.errors import MeasurementError
from mlperf_track.pipeline.events import CaseOutcome
from mlperf_track.tracking.report import build_html, build_markdown, markdown_table
from mlperf_track.tracking.summary import best_metrics, best_result, memory_metric, summary_figures, summary_row


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


def test_figures_have_one_line_per_configuration() -> None:
    figures, notes = summary_figures(_rows())
    assert set(figures) == {
        "figures/latency_vs_batch_size.png",
        "figures/throughput_vs_batch_size.png",
        "figures/memory_vs_batch_size.png",
    }
    assert notes == {}
    axes = figures["figures/latency_vs_batch_size.png"].axes[0]
    assert len(axes.get_lines()) >= 2
    assert memory_metric(_rows()) == m.CPU_RSS_PEAK


def test_no_figures_without_results() -> None:
    figures, notes = summary_figures(_rows()[3:])
    assert figures == {} and len(notes) == 3


def test_markdown_and_html() -> None:
    rows = _rows()
    table = markdown_table(rows)
    assert table.count("\n") == len(rows) + 1
    assert "boom \\| bad" in table
    text = build_markdown("t", config={"model": "tinycnn"}, rows=rows, best=rows[2], notes={"x": "why"})
    assert "**baseline-eager-bf16-bs1**" in text and "- x: why" in text
    page = build_html("t", config={"model": "<b>"}, rows=rows, best=None, figures={"f.png": b"\x89PNG"})
    assert "&lt;b&gt;" in page and "data:image/png;base64,iVBORw==" in page
    assert "no best case" in page
