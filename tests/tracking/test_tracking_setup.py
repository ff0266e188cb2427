"""Tracking URI and experiment selection."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

from mlperf_track.errors import ConfigError, StorageError
from mlperf_track.report.runs import resolve_experiments
from mlperf_track.tracking.setup import (
    LAUNCHER_TAG,
    POINTER_EXPERIMENT_TAG,
    POINTER_RUN_TAG,
    check_reachable,
    check_tracking_store,
    configure_tracking,
    default_tracking_uri,
    experiment_for,
    question_experiment,
    resolve_tracking_uri,
)


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


# --- the tracking store is checked before any work -------------------------------------------------------------


def test_store_in_a_missing_folder_is_refused_with_the_fix(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'absent' / 'mlflow.db'}"
    with pytest.raises(StorageError) as info:
        check_tracking_store(uri)
    message = str(info.value)
    assert "does not exist" in message and "mkdir -p" in message and "MLFLOW_TRACKING_URI" in message
    assert "\n" not in message
    assert not (tmp_path / "absent").exists()


def test_store_that_is_a_folder_or_not_a_database_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="is a folder"):
        check_tracking_store(f"sqlite:///{tmp_path}")
    text = tmp_path / "notes.db"
    text.write_text("not a database", encoding="utf-8")
    with pytest.raises(StorageError, match="is not a SQLite database"):
        check_tracking_store(f"sqlite:///{text}")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_store_in_a_read_only_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(StorageError, match="not writable"):
            check_tracking_store(f"sqlite:///{folder / 'mlflow.db'}")
    finally:
        folder.chmod(0o755)


def test_usable_stores_pass(tmp_path: Path) -> None:
    check_tracking_store(f"sqlite:///{tmp_path / 'new.db'}")  # can be created
    check_tracking_store("sqlite://")  # in memory
    check_tracking_store("postgresql://user@127.0.0.1:1/db")  # left to MLflow
    assert not (tmp_path / "new.db").exists()


def test_cli_refuses_an_unusable_store_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlperf_track.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'no' / 'such' / 'mlflow.db'}")
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    code = main(["run", "--model", "tinycnn", "--device", "cpu", "--variants", "none"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "does not exist" in err


# --- experiments named after the question -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "experiment"),
    [
        ("resnet50", "mlperf_track/resnet50"),
        ("tinycnn", "mlperf_track/tinycnn"),
        ("models:/classifier/3", "mlperf_track/classifier"),
        ("models:/classifier@champion", "mlperf_track/classifier"),
        ("runs:/0123456789abcdef/model", "mlperf_track/run-01234567-model"),
        ("/data/exports/my_net.pt2", "mlperf_track/my_net"),
        ("model.ts", "mlperf_track/model"),
    ],
)
def test_question_experiment(model: str, experiment: str) -> None:
    assert question_experiment(model) == experiment


def test_experiment_for_prefers_the_user_then_mlflow_then_the_question(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID"):
        monkeypatch.delenv(name, raising=False)
    assert experiment_for(None, "resnet50") == "mlperf_track/resnet50"
    assert experiment_for("mine", "resnet50") == "mine"
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "from-env")
    assert experiment_for(None, "resnet50") is None
    assert experiment_for("mine", "resnet50") == "mine"


def _launcher(experiment_id: str, **tags: str) -> str:
    """What ``mlflow run`` makes before starting our command: a PROJECT run."""
    import mlflow

    run = mlflow.MlflowClient().create_run(experiment_id, tags={"mlflow.source.type": "PROJECT", **tags})
    return run.info.run_id


def test_mlflow_run_without_an_experiment_moves_the_results_and_leaves_a_pointer(
    tracking: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    launcher = _launcher("0", **{"mlflow.project.entryPoint": "main"})
    monkeypatch.setenv("MLFLOW_RUN_ID", launcher)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "0")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    model = f"net{uuid.uuid4().hex[:6]}"

    configure_tracking(experiment_for(None, model))

    moved = os.environ["MLFLOW_RUN_ID"]
    assert moved != launcher
    run = client.get_run(moved)
    assert client.get_experiment(run.info.experiment_id).name == f"mlperf_track/{model}"
    assert run.data.tags[LAUNCHER_TAG] == launcher and run.data.tags["mlflow.project.entryPoint"] == "main"
    pointer = client.get_run(launcher).data.tags
    assert pointer[POINTER_RUN_TAG] == moved and pointer[POINTER_EXPERIMENT_TAG] == f"mlperf_track/{model}"
    assert moved in pointer["mlflow.note.content"]
    configure_tracking(None)  # a second call (bad-input handling) changes nothing
    assert os.environ["MLFLOW_RUN_ID"] == moved
    with mlflow.start_run() as resumed:  # what the pipeline does next
        assert resumed.info.run_id == moved


@pytest.mark.parametrize("case", ["named experiment", "nested step"])
def test_mlflow_run_with_an_experiment_or_nested_keeps_its_run(
    tracking: str, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    tags = {"mlflow.parentRunId": "f" * 32} if case == "nested step" else {}
    launcher = _launcher("0" if case == "nested step" else tracking, **tags)
    monkeypatch.setenv("MLFLOW_RUN_ID", launcher)
    assert experiment_for(None, "resnet50") is None
    configure_tracking(experiment_for(None, "resnet50"))
    assert os.environ["MLFLOW_RUN_ID"] == launcher


def test_resolve_experiments_takes_a_name_or_a_prefix(tracking: str) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    root = f"pfx{uuid.uuid4().hex[:6]}"
    for name in (f"{root}/a", f"{root}/b", f"{root}x", f"{root}/a/deeper"):
        client.create_experiment(name)

    def names(query: str) -> list[str]:
        return list(resolve_experiments(client, query).values())

    assert names(root) == [f"{root}/a", f"{root}/a/deeper", f"{root}/b"]
    assert names(f"{root}/*") == names(f"{root}/") == names(root)
    assert names(f"{root}/a") == [f"{root}/a", f"{root}/a/deeper"]
    assert names(f"{root}x") == [f"{root}x"]
    with pytest.raises(ConfigError, match=rf"did you mean {root}/b"):
        resolve_experiments(client, f"{root}/bb")
