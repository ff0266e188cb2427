"""``mlperf-track run --scenario``: the recommended case served under load, each point a child of the parent."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlperf_track import metrics as m
from mlperf_track.cli import main

PIPELINE = ["run", "--model", "tinycnn", "--image-size", "16", "--device", "cpu", "--batch-sizes", "1,4",
            "--runtimes", "eager", "--precisions", "fp32", "--variants", "none", "--dataset", "synthetic",
            "--accuracy", "false", "--max-time", "0.2", "--num-threads", "1"]  # fmt: skip


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLPERF_TRACK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)


def _runs(experiment: str) -> list:  # type: ignore[type-arg]
    import mlflow

    return mlflow.search_runs(experiment_names=[experiment], output_format="list")  # type: ignore[no-any-return]


def test_server_rates_are_children_of_the_pipeline_parent_with_figures(capsys: pytest.CaptureFixture[str]) -> None:
    import mlflow

    code = main([*PIPELINE, "--scenario", "server", "--rate", "300,600", "--latency-bound-ms", "200",
                 "--min-duration", "0.2", "--max-batch-size", "4", "--max-queue-delay-ms", "1",
                 "--experiment-name", "scenario"])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    runs = _runs("scenario")
    parent = next(run for run in runs if "mlflow.parentRunId" not in run.data.tags)
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    load_points = sorted(
        run.info.run_name for run in children if run.data.tags.get("mlperf_track.role") == "load_point"
    )
    cases = [run for run in children if run.data.tags.get("mlperf_track.role") != "load_point"]
    assert load_points == ["server@300qps", "server@600qps"]
    assert len(cases) == 2  # the pipeline's cases are still there, untouched
    point = next(run for run in children if run.info.run_name == "server@300qps")
    assert point.data.metrics[m.LOAD_OFFERED_QPS] > 0 and m.LOAD_QUEUE_P99 in point.data.metrics
    assert point.data.tags["load.case"] in {run.info.run_name for run in cases}
    assert point.data.params["deploy.max_batch_size"] == "4"
    assert parent.info.status == "FINISHED"
    figures = {item.path for item in mlflow.MlflowClient().list_artifacts(parent.info.run_id, "figures")}
    assert {"figures/latency_vs_load.png", "figures/latency_cdf.png", "figures/queue_vs_compute.png"} <= figures
    assert "server@300qps" in printed  # the console shows each point's verdict


@pytest.mark.slow
def test_a_max_qps_search_puts_best_max_qps_on_the_parent() -> None:
    code = main([*PIPELINE, "--batch-sizes", "1", "--scenario", "server", "--latency-bound-ms", "100",
                 "--min-duration", "0.1", "--experiment-name", "search"])  # fmt: skip
    assert code == 0
    runs = _runs("search")
    parent = next(run for run in runs if "mlflow.parentRunId" not in run.data.tags)
    assert parent.data.metrics[m.BEST_MAX_QPS] > 0
    assert parent.data.tags["load.search.stop_reason"]
    probes = [run for run in runs if run.data.tags.get("mlperf_track.role") == "load_point"]
    assert len(probes) == int(parent.data.tags["load.search.probes"])  # the calibration run is not a point


def test_without_a_scenario_no_load_point_runs() -> None:
    assert main([*PIPELINE, "--batch-sizes", "1", "--experiment-name", "plain"]) == 0
    assert not [run for run in _runs("plain") if run.data.tags.get("mlperf_track.role") == "load_point"]


@pytest.mark.parametrize(
    ("arguments", "flag"),
    [
        (["--scenario", "servr"], "--scenario"),
        (["--scenario", "server"], "--latency-bound-ms"),
        (["--scenario", "server", "--latency-bound-ms", "0"], "--latency-bound-ms"),
        (["--scenario", "server", "--latency-bound-ms", "50", "--rate", "-5"], "--rate"),
        (["--scenario", "offline", "--max-batch-size", "2,4"], "--max-batch-size"),
        (["--scenario", "offline", "--max-queue-delay-ms", "-1"], "--max-queue-delay-ms"),
        (["--scenario", "offline", "--load-workers", "0"], "--load-workers"),
        (["--scenario", "offline", "--min-duration", "x"], "--min-duration"),
    ],
)
def test_bad_load_flags_fail_in_one_line_before_any_case(
    arguments: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main([*PIPELINE, *arguments, "--experiment-name", "bad"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and flag in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not _runs_or_empty("bad")


def _runs_or_empty(experiment: str) -> list:  # type: ignore[type-arg]
    import mlflow

    try:
        return _runs(experiment)
    except mlflow.exceptions.MlflowException:
        return []
