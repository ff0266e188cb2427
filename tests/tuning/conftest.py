"""Fixtures for the tuning tests: a throw-away MLflow SQLite store with one experiment per test."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
_experiments = itertools.count()


@pytest.fixture(scope="session")
def tune_tracking_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite store for the session (creating its tables costs seconds)."""
    return tmp_path_factory.mktemp("tune_mlflow")


@pytest.fixture
def tracking(tune_tracking_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """MLflow pointed at the session store in a fresh experiment; the working directory is ``tmp_path``.

    Yields:
        The experiment name.
    """
    import mlflow

    uri = f"sqlite:///{tune_tracking_root / 'mlruns.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(uri)
    name = f"tune-test-{os.getpid()}-{next(_experiments)}"
    mlflow.set_experiment(name)
    yield name
    while mlflow.active_run() is not None:
        mlflow.end_run()
