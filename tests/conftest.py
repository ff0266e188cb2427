"""Shared test configuration: deterministic seeds, few threads, and the ``gpu`` marker's skip."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

os.environ.setdefault(
    "MLPERF_TRACK_CACHE", os.path.join(os.path.dirname(__file__), "..", ".pytest_cache", "mlperf_track")
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU; none is present")
    for item in items:
        # The marker itself, not ``item.keywords``: keywords also hold every parent directory's name, so a
        # checkout in a folder called ``gpu`` would skip the whole suite.
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _seed_and_threads() -> None:
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(1)


#: MLflow's environment: ``mlflow.set_tracking_uri``/``set_experiment`` write the first two (MLflow 3), and a CLI
#: ``main`` run in process calls them.
_MLFLOW_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID")


@pytest.fixture(autouse=True)
def _mlflow_state_restored() -> Iterator[None]:
    """Each test leaves MLflow's environment variables and global tracking URI as it found them.

    A test pointing MLflow at a store in its tmp_path (deleted at its teardown) must not leave the next test
    pointed at a folder that no longer exists; ``monkeypatch.delenv`` of an unset variable restores nothing.
    """
    saved_env = {name: os.environ.get(name) for name in _MLFLOW_ENV}
    saved_uri = _global_tracking_uri()
    yield
    if "mlflow" in sys.modules and _global_tracking_uri() != saved_uri:
        import mlflow

        mlflow.set_tracking_uri(saved_uri)  # type: ignore[arg-type]  # None unsets it (MLflow allows it)
    for name, value in saved_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _global_tracking_uri() -> str | None:
    """MLflow's process-wide tracking URI (``None`` until set, or when MLflow is not imported)."""
    if "mlflow" not in sys.modules:
        return None
    from mlflow.tracking._tracking_service import utils

    uri: str | None = utils._tracking_uri
    return uri
