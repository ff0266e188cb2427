"""Fixtures for the report tests: one SQLite tracking store per session, with realistic experiments in it."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from mixed_experiment import MixedExperiment, create_mixed_experiment
from report_experiment_factory import MACHINE_A, MACHINE_B, FakeExperiment, create_experiment

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
_names = itertools.count()


@pytest.fixture(scope="session")
def report_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """(tracking URI, artifact root) of a session-wide SQLite store: creating its tables costs seconds."""
    root = tmp_path_factory.mktemp("report_mlflow")
    return f"sqlite:///{root / 'mlruns.db'}", root / "artifacts"


@pytest.fixture(scope="session")
def two_machine_experiment(report_store: tuple[str, Path]) -> FakeExperiment:
    """Three configurations x three batch sizes on two machines, with accuracy, plus one failed case."""
    uri, artifacts = report_store
    return create_experiment(uri, "two-machines", artifacts, machines=(MACHINE_A, MACHINE_B))


@pytest.fixture
def fresh_experiment(report_store: tuple[str, Path]) -> Iterator[FakeExperiment]:
    """A new one-machine experiment (for tests that log into it)."""
    uri, artifacts = report_store
    yield create_experiment(uri, f"fresh-{os.getpid()}-{next(_names)}", artifacts, with_failure=False)


@pytest.fixture
def cli_tracking(report_store: tuple[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """Point the CLI's ``configure_tracking`` at the session store; run in ``tmp_path``."""
    import mlflow

    uri, _ = report_store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLPERF_TRACK_EXPERIMENT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    yield uri
    while mlflow.active_run() is not None:
        mlflow.end_run()


@pytest.fixture(scope="session")
def mixed_experiment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, MixedExperiment]]:
    """(tracking URI, runs) of an experiment holding what users really log (see ``mixed_experiment.py``).

    Its own SQLite store, so that prefixes and run names are not shared with the other report tests; MLflow's
    globals and environment are restored afterwards.
    """
    import mlflow
    from mlflow.tracking import fluent
    from mlflow.tracking._tracking_service import utils

    saved_uri = utils._tracking_uri
    root = tmp_path_factory.mktemp("mixed_mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    saved = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID")}
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    os.environ.pop("MLFLOW_RUN_ID", None)
    cwd = Path.cwd()
    os.chdir(root)
    try:
        mlflow.set_tracking_uri(uri)
        made = create_mixed_experiment("mlperf_track/mixed")
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
        os.chdir(cwd)
        fluent._active_experiment_id = None
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        mlflow.set_tracking_uri(saved_uri)  # type: ignore[arg-type]  # None unsets it (MLflow allows it)
    yield uri, made
