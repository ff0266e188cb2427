"""End to end: ``mlperf-track profile`` logs real runs; ``report``, ``compare`` and ``export`` read them back."""

from __future__ import annotations

import itertools
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import duckdb
import pytest
from mlflow import MlflowClient

from mlperf_track import metrics as m
from mlperf_track.cli import main

SVG = "{http://www.w3.org/2000/svg}"
_names = itertools.count()


@pytest.mark.slow
@pytest.mark.integration
def test_profile_then_report_compare_export(cli_tracking: str, tmp_path: Path) -> None:
    experiment = f"pipeline-{os.getpid()}-{next(_names)}"
    code = main([
        "profile", "--model", "tinycnn", "--device", "cpu", "--runtime", "eager", "--precision", "fp32",
        "--batch-size", "1,4", "--image-size", "16", "--dataset", "digits", "--epochs", "0", "--variants", "none",
        "--num-threads", "1", "--max-time", "0.3", "--output-dir", str(tmp_path / "cases"),
        "--experiment", experiment,
    ])  # fmt: skip
    assert code == 0
    client = MlflowClient(cli_tracking)
    made = client.get_experiment_by_name(experiment)
    assert made is not None
    experiment_id = made.experiment_id
    runs = client.search_runs([experiment_id])
    children = {run.data.tags["mlflow.runName"]: run for run in runs if "mlflow.parentRunId" in run.data.tags}
    assert set(children) == {"baseline-eager-fp32-bs1", "baseline-eager-fp32-bs4"}
    parent_id = next(iter(children.values())).data.tags["mlflow.parentRunId"]

    # The flame graph of a case run names the tiny CNN's convolutions.
    case = children["baseline-eager-fp32-bs4"]
    svg = Path(client.download_artifacts(case.info.run_id, "profile/flamegraph.svg", str(tmp_path)))
    names = {desc.text for desc in ET.parse(svg).getroot().iter(f"{SVG}desc")}
    assert "aten::conv2d" in names

    assert main(["report", "--experiment", experiment, "--run-id", parent_id, "--output-dir", str(tmp_path)]) == 0
    logged = {item.path for item in client.list_artifacts(parent_id, "report")}
    assert "report/report.html" in logged
    assert "baseline/eager/fp32" in (tmp_path / "report.md").read_text()

    one = children["baseline-eager-fp32-bs1"].info.run_id
    assert main(["compare", "--baseline", one, "--candidate", one, "--fail-on", "p50:5%"]) == 0

    target = tmp_path / "results.duckdb"
    assert main(["export", "--experiment", experiment, "--to", str(target)]) == 0
    with duckdb.connect(str(target), read_only=True) as connection:
        counts = dict(connection.execute("SELECT run_id, count(*) FROM samples GROUP BY run_id").fetchall())
    for run in children.values():
        assert counts[run.info.run_id] == run.data.metrics[m.LATENCY_COUNT]
