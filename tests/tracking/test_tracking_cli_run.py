"""``mlperf-track run``: auto defaults, bad input inside ``mlflow run``, and the real ``mlflow run .``."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlperf_track import metrics as m
from mlperf_track.cli import build_parser, main
from mlperf_track.cli.run import run_config_from_args
from mlperf_track.pipeline.defaults import auto_defaults

REPO = Path(__file__).resolve().parents[2]
PIPELINE_READY = (REPO / "mlperf_track" / "pipeline" / "runner.py").is_file() and (
    REPO / "mlperf_track" / "variants" / "registry.py"
).is_file()


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["run", "--model", "tinycnn", *argv])


def test_auto_values_take_the_device_defaults() -> None:
    defaults = auto_defaults("cpu")
    config = run_config_from_args(_args("--device", "cpu", "--variants", "none"))
    assert config.batch_sizes == tuple(defaults["batch_sizes"])
    assert config.runtimes == tuple(defaults["runtimes"])
    assert config.precisions == tuple(defaults["precisions"])
    assert config.image_size == defaults["image_size"]
    assert config.variants == () and config.profile is False


def test_explicit_values_and_none_weights() -> None:
    args = _args(
        "--device",
        "cpu",
        "--batch-size",
        "2,4",
        "--image-size",
        "32",
        "--weights",
        "none",
        "--profile",
        "true",
        "--variants",
        "auto",
    )
    config = run_config_from_args(args)
    assert config.batch_sizes == (2, 4) and config.image_size == 32 and config.profile is True
    assert config.weights is None
    assert config.variants == tuple(auto_defaults("cpu")["variants"])


def test_bad_parameter_inside_mlflow_run_fails_the_parent(
    tracking: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import mlflow

    parent = mlflow.MlflowClient().create_run(tracking)  # what `mlflow run` does before starting the command
    monkeypatch.setenv("MLFLOW_RUN_ID", parent.info.run_id)
    code = main(["run", "--model", "tinycnn", "--device", "cpu", "--batch-size", "0,x"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("mlperf-track run: error: invalid --batch-size")
    finished = mlflow.get_run(parent.info.run_id)
    assert finished.info.status == "FAILED"
    assert finished.data.tags["error.type"] == "ConfigError"
    assert "--batch-size" in finished.data.tags["error.message"]


def _artifacts(client: object, run_id: str, path: str | None = None) -> set[str]:
    found: set[str] = set()
    for item in client.list_artifacts(run_id, path):  # type: ignore[attr-defined]
        found |= _artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def check_pipeline_run_tree(uri: str, experiment_name: str, batch_sizes: tuple[int, ...]) -> str:
    """Assert the run tree of one tiny pipeline run; return the parent run id."""
    import mlflow

    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name(experiment_name)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    parents = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    assert len(parents) == 1, [run.info.run_name for run in parents]
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(int(run.data.params["batch_size"]) for run in children) == sorted(batch_sizes)
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.info.run_name == f"baseline-eager-fp32-bs{child.data.params['batch_size']}"
        for key in (m.LATENCY_P50, m.LATENCY_P99, m.THROUGHPUT, m.MODEL_PARAMS):
            assert key in child.data.metrics, key
        assert "hw.cpu" in child.data.tags and "sw.torch" in child.data.tags
        assert {"samples.csv", "result.json"} <= _artifacts(client, child.info.run_id)
    assert "hw.cpu" in parent.data.tags and parent.data.tags["mlperf_track.role"] == "pipeline"
    # A best is named only among valid cases; a loaded machine may leave none, and then the parent says so.
    if any(child.data.tags.get(m.VALID_TAG) == "true" for child in children):
        assert f"best/{m.THROUGHPUT}" in parent.data.metrics
    else:
        assert parent.data.tags["best.status"] == "none_eligible"
    assert {
        "summary.json",
        "summary.csv",
        "report/report.md",
        "report/report.html",
        "figures/latency_vs_batch_size.png",
    } <= _artifacts(client, parent.info.run_id)
    models = client.search_logged_models([experiment.experiment_id])
    assert [model.name for model in models] == ["baseline"]
    return parent.info.run_id


TINY_PARAMS = {
    "model": "tinycnn",
    "device": "cpu",
    "image_size": "32",
    "batch_sizes": "1,2",
    "epochs": "0",
    "runtimes": "eager",
    "precisions": "fp32",
    "variants": "none",
    "dataset": "synthetic",
    "max_time": "1",
    "target_ci": "0.25",  # a loose precision target keeps the result valid on a busy machine
    "num_threads": "1",
}


@pytest.mark.integration
@pytest.mark.skipif(not PIPELINE_READY, reason="the pipeline is not written yet")
def test_mlflow_run_project(tmp_path: Path) -> None:
    """``mlflow run . --env-manager local`` on a tiny configuration, checked through MlflowClient."""
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "PYTHONPATH": str(REPO),
        "MLPERF_TRACK_CACHE": str(tmp_path / "cache"),
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # `python` of this venv
    }
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        env.pop(name, None)
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "run",
        str(REPO),
        "--env-manager",
        "local",
        "--experiment-name",
        "tiny-project",
    ]
    for key, value in TINY_PARAMS.items():
        command += ["-P", f"{key}={value}"]
    completed = subprocess.run(command, check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert completed.returncode == 0, completed.stderr[-4000:]
    check_pipeline_run_tree(uri, "tiny-project", (1, 2))


@pytest.mark.integration
@pytest.mark.skipif(not PIPELINE_READY, reason="the pipeline is not written yet")
def test_mlflow_run_without_an_experiment_answers_into_the_model_experiment(tmp_path: Path) -> None:
    """``mlflow run .`` with no experiment: results in ``mlperf_track/tinycnn``, a pointer left in ``Default``,
    the singular ``-P batch_size`` spelling honoured, and no third-party output on the console."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "PYTHONPATH": str(REPO),
        "MLPERF_TRACK_CACHE": str(tmp_path / "cache"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        env.pop(name, None)
    params = {**TINY_PARAMS, "batch_size": "2"}
    params.pop("batch_sizes")
    command = [sys.executable, "-m", "mlflow", "run", str(REPO), "--env-manager", "local"]
    for key, value in params.items():
        command += ["-P", f"{key}={value}"]
    completed = subprocess.run(command, check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert completed.returncode == 0, completed.stderr[-4000:]
    parent_id = check_pipeline_run_tree(uri, "mlperf_track/tinycnn", (2,))
    client = mlflow.MlflowClient(uri)
    (launcher,) = client.search_runs(["0"])
    assert launcher.data.tags["mlperf_track.run_id"] == parent_id
    assert launcher.data.tags["mlperf_track.experiment"] == "mlperf_track/tinycnn"
    ours = [line for line in completed.stderr.splitlines() if "mlflow." not in line]  # mlflow run's own lines
    for line in ours:
        assert not line.startswith(("W1", "E1", "USDT", "ERROR:")) and "Warning" not in line, line
