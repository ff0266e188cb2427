"""The MLproject files: every entry point's command parses with the CLI, and the example projects run."""

from __future__ import annotations

import importlib.util
import os
import shlex
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from mlflow.entities import Run

from mlperf_track import metrics as m
from mlperf_track.cli import build_parser
from mlperf_track.cli.options import ENTRY_POINTS, options_for

REPO = Path(__file__).resolve().parents[2]
PROJECTS = REPO / "projects"
PIPELINE_READY = (REPO / "mlperf_track" / "variants" / "registry.py").is_file()


def _project(path: Path) -> Any:
    from mlflow.projects._project_spec import load_project

    return load_project(str(path))


def _command(project: Any, entry_point: str, **params: str) -> list[str]:
    point = project.get_entry_point(entry_point)
    return shlex.split(point.compute_command(params, None))


def test_root_project_entry_points_parse_with_the_cli() -> None:
    project = _project(REPO)
    assert project.name == "mlperf_track" and project.env_type == "conda_env"
    assert set(project._entry_points) == {"main", "benchmark", "profile", "report", "tune", "serve"}
    parser = build_parser()
    for entry_point in (*ENTRY_POINTS, "report", "serve"):
        argv = _command(project, entry_point, experiment="x")
        assert argv[:3] == ["python", "-m", "mlperf_track"], argv
        args = parser.parse_args(argv[3:])  # a flag the CLI does not know exits with code 2
        assert callable(args.func)


@pytest.mark.parametrize("entry_point", sorted(ENTRY_POINTS))
def test_entry_point_parameters_match_the_option_table(entry_point: str) -> None:
    """Same names, same defaults as the command's options, and every value reaches its option."""
    command = ENTRY_POINTS[entry_point]
    point = _project(REPO).get_entry_point(entry_point)
    expected = {
        option.name: option.mlproject_default or option.default_for(command)
        for option in options_for(command)
        if option.in_mlproject
    }
    declared = {name: parameter.default for name, parameter in point.parameters.items()}
    assert declared == expected
    sentinels = {name: f"value-of-{name}" for name in declared}
    argv = shlex.split(point.compute_command(sentinels, None))
    args = build_parser().parse_args(argv[3:])
    for name, value in sentinels.items():
        received = getattr(args, name)
        assert (received[-1] if isinstance(received, list) else received) == value, name


def test_undeclared_parameter_in_the_other_spelling_reaches_its_option() -> None:
    """``-P batch_size=8`` (undeclared) is appended as ``--batch_size 8`` by MLflow and overrides the default."""
    argv = _command(_project(REPO), "main", batch_size="8", option="ratio=0.3", model="tinycnn")
    args = build_parser().parse_args(argv[3:])
    assert args.batch_sizes == "8" and args.options[-1] == "ratio=0.3"


def test_main_entry_point_builds_a_pipeline_config() -> None:
    from mlperf_track.cli.run import run_config_from_args

    argv = _command(_project(REPO), "main", model="tinycnn", device="cpu", variants="none")
    config = run_config_from_args(build_parser().parse_args(argv[3:]))
    assert config.model == "tinycnn" and config.device == "cpu" and config.weights is None
    assert config.batch_sizes and config.runtimes and not config.profile and config.options == ()


def _load_workflow() -> ModuleType:
    spec = importlib.util.spec_from_file_location("workflow_script", PROJECTS / "workflow" / "workflow.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("quick", [False, True])
def test_workflow_passes_only_parameters_the_root_entry_points_declare(quick: bool) -> None:
    import argparse

    workflow = _load_workflow()
    root = _project(REPO)
    args = argparse.Namespace(
        model="tinycnn", device="cpu", batch_sizes="auto", image_size="auto", max_time="auto", n_trials="3"
    )
    for step in workflow.STEPS:
        params = workflow.step_parameters(step, args, "exp", quick)
        declared = set(root.get_entry_point(step).parameters)
        assert set(params) <= declared, (step, set(params) - declared)
        if step == "report":
            assert params == {"experiment": "exp"}


def test_example_projects_load() -> None:
    for name, script in (("sklearn_latency", "compare_classifiers.py"), ("workflow", "workflow.py")):
        project = _project(PROJECTS / name)
        argv = _command(project, "main")
        assert argv[:2] == ["python", script] and (PROJECTS / name / script).is_file()
        assert (PROJECTS / name / "README.md").is_file()


def _env(tmp_path: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlruns.db'}",
        "PYTHONPATH": str(REPO),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLPERF_TRACK_CACHE": str(tmp_path / "cache"),
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    env.pop("MLFLOW_RUN_ID", None)
    env.pop("MLFLOW_EXPERIMENT_ID", None)
    return env


def _mlflow_run(tmp_path: Path, project: Path, experiment: str, entry_point: str = "main", **params: str) -> None:
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "run",
        str(project),
        "--env-manager",
        "local",
        "--experiment-name",
        experiment,
        "-e",
        entry_point,
    ]
    for key, value in params.items():
        command += ["-P", f"{key}={value}"]
    completed = subprocess.run(
        command, check=False, cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=580
    )
    assert completed.returncode == 0, completed.stderr[-4000:]


def _runs(tmp_path: Path, experiment: str) -> list[Run]:
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlruns.db'}")
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    return list(client.search_runs([found.experiment_id]))


def _artifact_paths(tmp_path: Path, run_id: str, folder: str) -> set[str]:
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlruns.db'}")
    return {item.path for item in client.list_artifacts(run_id, folder)}


@pytest.mark.integration
@pytest.mark.slow
def test_sklearn_latency_project(tmp_path: Path) -> None:
    _mlflow_run(tmp_path, PROJECTS / "sklearn_latency", "sklearn", quick="true", batch_sizes="1,8")
    runs = _runs(tmp_path, "sklearn")
    parent = next(run for run in runs if "mlflow.parentRunId" not in run.data.tags)
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(run.info.run_name for run in children) == sorted(
        ["logistic_regression", "random_forest", "linear_svm", "rbf_svm", "mlp_small", "mlp_large"]
    )
    for run in children:
        metrics = run.data.metrics
        for key in (
            f"{m.LATENCY_P50}_bs1",
            f"{m.LATENCY_P50}_bs8",
            f"{m.THROUGHPUT}_bs8",
            m.ACCURACY_TOP1,
            m.MODEL_SIZE,
        ):
            assert key in metrics, (run.info.run_name, key)
        assert 0.3 < metrics[m.ACCURACY_TOP1] <= 1.0
    assert parent.data.tags["best.classifier"] in {run.info.run_name for run in children}


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.skipif(not PIPELINE_READY, reason="the pipeline is not written yet")
def test_workflow_project(tmp_path: Path) -> None:
    _mlflow_run(
        tmp_path,
        PROJECTS / "workflow",
        "workflow",
        model="tinycnn",
        device="cpu",
        steps="benchmark,report",
        quick="true",
        root=str(REPO),
    )
    runs = _runs(tmp_path, "workflow")
    by_id = {run.info.run_id: run for run in runs}
    top = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    assert len(top) == 1
    workflow = top[0]
    steps = {
        run.data.tags["mlflow.project.entryPoint"]: run
        for run in runs
        if run.data.tags.get("mlflow.parentRunId") == workflow.info.run_id
    }
    assert set(steps) == {"benchmark", "report"}
    assert all(run.info.status == "FINISHED" for run in steps.values())
    cases = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == steps["benchmark"].info.run_id]
    assert len(cases) == 2
    assert workflow.data.tags["step.benchmark.run_id"] in by_id
    # The best case's metrics travel up to the workflow run; a loaded machine may leave no case valid, and then
    # the benchmark step says so instead of naming a best.
    if any(case.data.tags.get(m.VALID_TAG) == "true" for case in cases):
        assert f"benchmark/best/{m.THROUGHPUT}" in workflow.data.metrics
    else:
        assert steps["benchmark"].data.tags["best.status"] == "none_eligible"
        assert not any(key.startswith("benchmark/best/") for key in workflow.data.metrics)


def test_tune_entry_point_builds_a_tune_config() -> None:
    from mlperf_track.cli.tune import config_from_args

    argv = _command(_project(REPO), "tune", model="tinycnn", device="cpu", memory_limit_mb="800", time_budget="300")
    config = config_from_args(build_parser().parse_args(argv[3:]))
    assert config.pipeline.model == "tinycnn" and config.search.memory_limit_mb == 800
    assert config.search.sampler == "auto" and config.search.time_budget_s == 300


def test_serve_entry_point_reaches_every_load_flag() -> None:
    """Every ``serve`` parameter arrives at its ``mlperf-track load`` flag, and the defaults build a plan."""
    from mlperf_track.cli.load_options import build_plan

    point = _project(REPO).get_entry_point("serve")
    sentinels = {name: f"value-of-{name}" for name in point.parameters}
    args = build_parser().parse_args(shlex.split(point.compute_command(sentinels, None))[3:])
    for name, value in sentinels.items():
        assert getattr(args, name) == value, name
    defaults = build_parser().parse_args(_command(_project(REPO), "serve", model="tinycnn", device="cpu")[3:])
    plan = build_plan(defaults, None)
    assert plan.config.scenario == "server" and plan.config.latency_bound_ms == 50.0
    assert plan.search is not None and plan.rates == ()  # rate=auto searches max_qps
    assert plan.target.weights is None  # type: ignore[attr-defined]


@pytest.mark.integration
@pytest.mark.slow
def test_serve_entry_point_logs_a_parent_and_a_child_per_load_point(tmp_path: Path) -> None:
    params = {
        "model": "tinycnn",
        "device": "cpu",
        "image_size": "16",
        "rate": "40,80",
        "latency_bound_ms": "100",
        "min_duration": "0.3",
        "num_threads": "1",
        "max_batch_size": "4",
        "max_queue_delay_ms": "1",
    }
    _mlflow_run(tmp_path, REPO, "serve-project", entry_point="serve", **params)
    runs = _runs(tmp_path, "serve-project")
    parents = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert sorted(run.info.run_name for run in children) == ["server@40qps", "server@80qps"]
    for child in children:
        assert m.LOAD_LATENCY_P99 in child.data.metrics and m.LOAD_QUEUE_P99 in child.data.metrics
    artifacts = _artifact_paths(tmp_path, parents[0].info.run_id, "figures")
    assert "figures/latency_vs_load.png" in artifacts
