"""Export round trips: what DuckDB and Parquet hold equals what MLflow holds."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from mlflow import MlflowClient
from report_experiment_factory import MACHINE_A, N_SAMPLES, FakeExperiment

from mlperf_track import metrics as m
from mlperf_track.cli import main
from mlperf_track.errors import ConfigError
from mlperf_track.report.export import export_experiment, export_format

TABLES = ("runs", "params", "metrics", "tags", "samples")


def _expected(uri: str, experiment: FakeExperiment) -> tuple[MlflowClient, list[str]]:
    client = MlflowClient(uri)
    run_ids = [run.info.run_id for run in client.search_runs([experiment.experiment_id], max_results=1000)]
    return client, run_ids


def _check_tables(tables: dict[str, pd.DataFrame], uri: str, experiment: FakeExperiment) -> None:
    client, run_ids = _expected(uri, experiment)
    assert sorted(tables["runs"]["run_id"]) == sorted(run_ids)
    case_id = experiment.case_run_ids[(MACHINE_A, "baseline-eager-fp32-bs4")]
    run = client.get_run(case_id)
    metrics = tables["metrics"][tables["metrics"]["run_id"] == case_id]
    assert dict(zip(metrics["key"], metrics["value"], strict=True)) == run.data.metrics
    params = tables["params"][tables["params"]["run_id"] == case_id]
    assert dict(zip(params["key"], params["value"], strict=True)) == run.data.params
    tags = tables["tags"][tables["tags"]["run_id"] == case_id]
    assert dict(zip(tags["key"], tags["value"], strict=True)) == run.data.tags
    samples = tables["samples"][tables["samples"]["run_id"] == case_id].sort_values("iteration")
    assert samples["iteration"].tolist() == list(range(N_SAMPLES))
    assert np.median(samples["latency_ms"]) == pytest.approx(run.data.metrics[m.LATENCY_P50])
    # Every case run has samples; the parent and the failed run have none.
    assert tables["samples"]["run_id"].nunique() == len(experiment.case_run_ids)
    status = dict(zip(tables["runs"]["run_id"], tables["runs"]["status"], strict=True))
    if experiment.failed_run_id is not None:
        assert status[experiment.failed_run_id] == "FAILED"


def test_duckdb_round_trip(fresh_experiment: FakeExperiment, report_store: tuple[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "results.duckdb"
    counts = export_experiment(fresh_experiment.name, target, tracking_uri=report_store[0])
    with duckdb.connect(str(target), read_only=True) as connection:
        tables = {name: connection.sql(f"SELECT * FROM {name}").to_arrow_table().to_pandas() for name in TABLES}
        wide = connection.execute(
            "SELECT run_id, max(value) FILTER (WHERE key = 'throughput/samples_per_s') AS tput "
            "FROM metrics GROUP BY run_id HAVING tput IS NOT NULL"
        ).fetchall()
    assert {name: len(frame) for name, frame in tables.items()} == counts
    assert len(wide) == len(fresh_experiment.case_run_ids)
    _check_tables(tables, report_store[0], fresh_experiment)
    # Exporting again replaces the tables instead of appending.
    assert export_experiment(fresh_experiment.name, target, tracking_uri=report_store[0]) == counts


def test_parquet_round_trip_writes_one_file_per_table(
    two_machine_experiment: FakeExperiment, report_store: tuple[str, Path], tmp_path: Path
) -> None:
    target = tmp_path / "results.parquet"
    counts = export_experiment("two-machines", target, tracking_uri=report_store[0])
    assert sorted(path.name for path in target.iterdir()) == sorted(f"{name}.parquet" for name in TABLES)
    tables = {name: pq.read_table(target / f"{name}.parquet").to_pandas() for name in TABLES}
    assert {name: len(frame) for name, frame in tables.items()} == counts
    assert str(tables["runs"]["start_time"].dtype).startswith("datetime64")
    _check_tables(tables, report_store[0], two_machine_experiment)


def test_export_format_by_suffix() -> None:
    assert export_format(Path("a.duckdb")) == "duckdb"
    assert export_format(Path("a.db")) == "duckdb"
    assert export_format(Path("a.parquet")) == "parquet"
    with pytest.raises(ConfigError, match=r"\.duckdb"):
        export_format(Path("a.csv"))


def test_cli_export(fresh_experiment: FakeExperiment, cli_tracking: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--experiment", fresh_experiment.name, "--to", "out.duckdb", "--no-samples"]) == 0
    assert "runs 10" in capsys.readouterr().out
    with duckdb.connect("out.duckdb", read_only=True) as connection:
        names = {row[0] for row in connection.execute("SHOW TABLES").fetchall()}
    assert names == {"runs", "params", "metrics", "tags"}
    assert main(["export", "--experiment", fresh_experiment.name, "--to", "out.xlsx"]) == 2
