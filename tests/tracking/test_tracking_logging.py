"""One result into one run: params, metrics, tags, notes, raw samples, JSON; failed runs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from tracking_helpers import make_result

from mlperf_track import metrics as m
from mlperf_track.engine.result import BenchmarkResult
from mlperf_track.tracking.logging import log_case_result, mark_run_failed


def _download(run_id: str, path: str, tmp_path: Path) -> Path:
    import mlflow

    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, dst_path=str(tmp_path)))


def test_log_case_result_writes_everything(tracking: str, tmp_path: Path) -> None:
    import mlflow

    result = make_result(batch_size=4, p50=3.0)
    profile_file = tmp_path / "top_ops.md"
    profile_file.write_text("| op | ms |\n", encoding="utf-8")
    with mlflow.start_run() as run:
        log_case_result(result, {"top_ops.md": profile_file})
    data = mlflow.get_run(run.info.run_id).data
    assert data.params == result.case.params()
    assert data.metrics[m.LATENCY_P50] == pytest.approx(3.0)
    assert data.metrics[m.THROUGHPUT] == pytest.approx(4000 / 3)
    assert m.GPU_PEAK_ALLOCATED not in data.metrics
    assert data.tags[f"note.{m.GPU_PEAK_ALLOCATED}"] == "no GPU on this machine"
    assert data.tags["warnings"] == "spread is high"
    assert data.tags["timing.stop_reason"] == "max_time"
    assert "hw.cpu" in data.tags and "sw.torch" in data.tags

    with _download(run.info.run_id, "samples.csv", tmp_path / "a").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(row["latency_ms"]) for row in rows] == pytest.approx(list(result.samples_ms))
    loaded = BenchmarkResult.from_dict(
        json.loads(_download(run.info.run_id, "result.json", tmp_path / "b").read_text())
    )
    assert loaded == result
    assert _download(run.info.run_id, "profile/top_ops.md", tmp_path / "c").read_text() == "| op | ms |\n"


def test_given_files_are_logged_as_they_are(tracking: str, tmp_path: Path) -> None:
    import mlflow

    samples = tmp_path / "samples.csv"
    samples.write_text("iteration,latency_ms\n0,42.0\n", encoding="utf-8")
    with mlflow.start_run() as run:
        log_case_result(make_result(), {"samples.csv": samples})
    assert "42.0" in _download(run.info.run_id, "samples.csv", tmp_path / "d").read_text()


def test_needs_an_active_run(tracking: str) -> None:
    with pytest.raises(RuntimeError, match="no active MLflow run"):
        log_case_result(make_result())


def test_mark_run_failed(tracking: str) -> None:
    import mlflow

    with mlflow.start_run() as run:
        mark_run_failed(ValueError("x" * 9000))
    assert mlflow.active_run() is None
    finished = mlflow.get_run(run.info.run_id)
    assert finished.info.status == "FAILED"
    assert finished.data.tags["error.type"] == "ValueError"
    assert 1000 < len(finished.data.tags["error.message"]) <= 5000
