"""Tracking URI and experiment selection."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from mlperf_track.errors import StorageError
from mlperf_track.tracking.setup import check_reachable, configure_tracking, default_tracking_uri, resolve_tracking_uri


def test_default_is_sqlite_in_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path.resolve().as_posix()}/mlflow.db"
    assert default_tracking_uri(tmp_path) == resolve_tracking_uri()


def test_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    assert resolve_tracking_uri() == "http://127.0.0.1:1"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_server_fails_fast_with_storage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    uri = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(StorageError, match="cannot be reached"):
        check_reachable(uri, timeout_s=2)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(StorageError):
        configure_tracking("anything")


def test_configure_tracking_sets_uri_and_experiment(tracking: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    uri = configure_tracking("mlperf-setup-test")
    assert uri.startswith("sqlite:///")
    assert mlflow.get_tracking_uri() == uri
    with mlflow.start_run() as run:
        pass
    experiment = mlflow.get_experiment(run.info.experiment_id)
    assert experiment.name == "mlperf-setup-test"


def test_experiment_ignored_inside_mlflow_run(tracking: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    before = mlflow.get_experiment_by_name("never-created-here")
    monkeypatch.setenv("MLFLOW_RUN_ID", "0" * 32)
    configure_tracking("never-created-here")
    assert before is None and mlflow.get_experiment_by_name("never-created-here") is None
