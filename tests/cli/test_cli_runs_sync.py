"""``runs cleanup``, ``sync`` and the signal guard, through the command line."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlperf_track import metrics as m
from mlperf_track.cli import main
from mlperf_track.cli.signals import interrupt_once
from mlperf_track.liveness import ProcessIdentity, start_ticks
from mlperf_track.pipeline.workdir import WORK_ROOT, WorkDir


def _gone() -> ProcessIdentity:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    identity = dataclasses.replace(ProcessIdentity.current(), pid=child.pid, start=start_ticks(child.pid))
    child.wait()
    return identity


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    return uri


def test_runs_cleanup_closes_runs_of_gone_processes_and_their_work_folders(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    import mlflow

    from mlperf_track.tracking.stale import identity_tags

    client = mlflow.MlflowClient(store)
    client.search_experiments()  # creates the store
    gone = _gone()
    stale = client.create_run("0", tags=identity_tags(gone)).info.run_id
    orphan = tmp_path / "mlperf_track_output" / WORK_ROOT / "x"
    orphan.mkdir(parents=True)
    (orphan / "owner.json").write_text(json.dumps(gone.to_dict()), encoding="utf-8")
    live = WorkDir(tmp_path / "mlperf_track_output")
    live.case_dir("case")
    assert main(["runs", "cleanup", "--dry-run"]) == 0
    assert "would close 1 run" in capsys.readouterr().out and client.get_run(stale).info.status == "RUNNING"
    assert main(["runs", "cleanup", "--dry-run", "--experiment", "Default"]) == 0
    assert "would close 1 run" in capsys.readouterr().out
    assert main(["runs", "cleanup", "--dry-run", "--experiment", "nothing-like-it"]) == 2
    assert main(["runs", "cleanup"]) == 0
    out = capsys.readouterr().out
    assert "closed 1 run" in out and "deleted 1 work folder" in out
    run = client.get_run(stale)
    assert run.info.status == "KILLED" and "is gone" in run.data.tags[m.KILLED_REASON_TAG]
    assert not orphan.exists() and live.root.is_dir()
    assert main(["runs", "cleanup", "--timeout", "0"]) == 2


def test_sync_of_nothing_and_of_a_folder_that_does_not_exist(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sync", str(tmp_path)]) == 0
    assert "nothing waits" in capsys.readouterr().out
    assert main(["sync", str(tmp_path / "missing")]) == 2
    assert "DIR" in capsys.readouterr().err


def test_the_first_signal_interrupts_and_the_next_are_ignored_while_stopping() -> None:
    stages: list[str] = []
    with interrupt_once():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler runs here at the latest
            stages.append("not interrupted")
        except KeyboardInterrupt:
            stages.append("interrupted")
            os.kill(os.getpid(), signal.SIGTERM)  # what mlflow run sends while we close the runs
            os.kill(os.getpid(), signal.SIGINT)
            stages.append("cleanup finished")
    assert stages == ["interrupted", "cleanup finished"]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # restored


def test_runs_and_sync_are_listed_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "runs" in out and "sync" in out
