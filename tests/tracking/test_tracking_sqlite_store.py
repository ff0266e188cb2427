"""A new SQLite store opened by several processes at once is created and migrated once, and nobody crashes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlperf_track.tracking.sqlite_store import file_lock, prepare_sqlite_store, sqlite_file

REPO = Path(__file__).resolve().parents[2]
_WORKER = """
import sys, time
import mlflow
from mlperf_track.tracking.sqlite_store import prepare_sqlite_store
uri, start, name = sys.argv[1], float(sys.argv[2]), sys.argv[3]
while time.time() < start:
    time.sleep(0.01)
prepare_sqlite_store(uri)
client = mlflow.MlflowClient(uri)
client.create_run(client.create_experiment(name))
"""


@pytest.mark.slow
def test_processes_started_together_on_a_new_store_all_succeed(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'new.db'}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.time() + 20  # every process imports mlflow first, then they all open the store at once
    workers = [
        subprocess.Popen([sys.executable, "-c", _WORKER, uri, str(start), f"e{i}"], env=env, stderr=subprocess.PIPE)
        for i in range(4)
    ]
    errors = [worker.communicate(timeout=300)[1].decode() for worker in workers]
    assert [worker.returncode for worker in workers] == [0] * 4, "\n".join(errors)[-3000:]
    import mlflow

    assert (
        len(
            mlflow.MlflowClient(uri).search_runs(
                [e.experiment_id for e in mlflow.MlflowClient(uri).search_experiments()]
            )
        )
        == 4
    )


def test_other_stores_are_left_to_mlflow(tmp_path: Path) -> None:
    assert not prepare_sqlite_store("http://127.0.0.1:1")
    assert not prepare_sqlite_store("sqlite:///:memory:")
    assert sqlite_file("sqlite:////tmp/x.db?timeout=5") == Path("/tmp/x.db")


def test_a_held_lock_times_out_with_a_message(tmp_path: Path) -> None:
    lock = tmp_path / "db.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import fcntl,time; f=open({str(lock)!r},'w'); fcntl.flock(f, fcntl.LOCK_EX); "
         "print('held', flush=True); time.sleep(30)"],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
        with pytest.raises(TimeoutError, match="locked by another process"), file_lock(lock, timeout_s=0.3):
            pass
    finally:
        holder.kill()
        holder.wait()
    with file_lock(lock, timeout_s=5):  # free again once the holder is gone
        pass
