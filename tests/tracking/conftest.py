"""Fixtures for the MLflow tests: a throw-away SQLite tracking store, hand-made results, a tiny model."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from tracking_helpers import isolated_mlflow, tiny_module

from mlperf_track.models.artifact import ModelArtifact

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
_experiments = itertools.count()


@pytest.fixture(scope="session")
def tracking_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite store for the session (creating its tables costs seconds); each test gets an experiment."""
    return tmp_path_factory.mktemp("mlflow")


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
