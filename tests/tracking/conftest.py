"""Fixtures for the MLflow tests: a throw-away SQLite tracking store, hand-made results, a tiny model."""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from tracking_helpers import tiny_module

from mlperf_track.models.artifact import ModelArtifact

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
_experiments = itertools.count()


@pytest.fixture(scope="session")
def tracking_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite store for the session (creating its tables costs seconds); each test gets an experiment."""
    return tmp_path_factory.mktemp("mlflow")


_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID")


@contextlib.contextmanager
def isolated_mlflow(uri: str, experiment: str, workdir: Path) -> Iterator[str]:
    """Use ``uri`` and a new experiment, then restore MLflow's globals and environment variables.

    ``mlflow.set_tracking_uri`` and ``mlflow.set_experiment`` also write ``MLFLOW_TRACKING_URI`` and
    ``MLFLOW_EXPERIMENT_ID`` into ``os.environ``; without this, other test modules would log into our store.
    """
    import mlflow
    from mlflow.tracking import fluent
    from mlflow.tracking._tracking_service import utils

    saved_env = {name: os.environ.get(name) for name in _ENV}
    saved_uri, saved_cwd = utils._tracking_uri, Path.cwd()
    os.environ["MLFLOW_TRACKING_URI"] = uri
    for name in _ENV[1:]:
        os.environ.pop(name, None)
    os.chdir(workdir)
    try:
        mlflow.set_tracking_uri(uri)
        yield mlflow.set_experiment(experiment).experiment_id
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
        mlflow.set_tracking_uri(saved_uri)  # type: ignore[arg-type]  # None unsets it (MLflow allows it)
        fluent._active_experiment_id = None
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        os.chdir(saved_cwd)


@pytest.fixture
def tracking(tracking_root: Path) -> Iterator[str]:
    """The session store, in a fresh experiment (its id is the fixture's value)."""
    uri = f"sqlite:///{tracking_root / 'mlruns.db'}"
    with isolated_mlflow(uri, f"test-{os.getpid()}-{next(_experiments)}", tracking_root) as experiment_id:
        yield experiment_id


@pytest.fixture
def tiny_artifact() -> ModelArtifact:
    return ModelArtifact(
        name="tinycnn", input_shape=(3, 8, 8), module=tiny_module(), num_classes=3, tags={"recipe": "baseline"}
    )
