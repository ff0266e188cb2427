"""Nothing lost? Concurrent starts, interruptions and tracking outages, counted (issue 14).

Every scenario runs real processes (``python -m mlperf_track run`` on tinycnn, 16 px, synthetic data, eager fp32,
five batch sizes) in a fresh temporary folder and then reads the tracking store:

- ``first use``: N processes open one *new* SQLite store at the same instant (created and migrated by whoever comes
  first) and create a run; ``raw`` is MLflow alone (the ``_alembic_tmp_latest_metrics already exists`` race),
  ``locked`` goes through :func:`mlperf_track.tracking.sqlite_store.prepare_sqlite_store` first.
- ``together``: N pipelines started at once in one working folder against one new SQLite store, or against a
  tracking server: processes crashed, child runs whose logged ``result.json`` is another case's or disagrees with
  the run's own throughput (a file written by another process), runs left RUNNING.
- ``ctrl-c after k``: SIGINT to the pipeline's process group once k cases finished: cases lost (finished before
  the signal, not FINISHED after), runs left RUNNING, the parent's status.
- ``kill -9 after k, resume``: SIGKILL once k cases finished, then ``--resume last``: cases measured twice, cases
  not FINISHED exactly once under the final parent, the killed parent's status.
- ``server restart``: the tracking server stopped once a case finished and started again 10 s later: cases logged
  late (``cases/logged_late``), cases lost.

Usage::

    python benchmarks/reliability.py            # every scenario, 3 and 8 processes (several minutes on 2 cores)
    python benchmarks/reliability.py --quick    # 3 processes only, one fault point each
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BATCH_SIZES = "1,2,3,4,5"
RUN_ARGS = ["--model", "tinycnn", "--device", "cpu", "--batch-sizes", BATCH_SIZES, "--image-size", "16",
            "--epochs", "0", "--runtimes", "eager", "--precisions", "fp32", "--variants", "none",
            "--dataset", "synthetic", "--max-time", "1", "--num-threads", "1", "--target-ci", "0.5",
            "--experiment-name", "reliability"]  # fmt: skip
FIRST_USE = """
import sys, time
import mlflow
uri, start, locked = sys.argv[1], float(sys.argv[2]), sys.argv[3] == "1"
while time.time() < start:
    time.sleep(0.01)
if locked:
    from mlperf_track.tracking.sqlite_store import prepare_sqlite_store
    prepare_sqlite_store(uri)
client = mlflow.MlflowClient(uri)
client.create_run(client.create_experiment(f"e{time.monotonic_ns()}"))
"""
Row = dict[str, Any]


def _env(folder: Path, uri: str) -> dict[str, str]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(ROOT), "MLPERF_TRACK_CACHE": str(folder / "c")}
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        env.pop(name, None)
    return env


def _pipeline(folder: Path, uri: str, *extra: str) -> subprocess.Popen[bytes]:
    log = (folder / f"run-{time.monotonic_ns()}.log").open("wb")
    command = [sys.executable, "-m", "mlperf_track", "run", *RUN_ARGS, *extra]
    return subprocess.Popen(command, cwd=folder, env=_env(folder, uri), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip


def _runs(uri: str) -> list[Any]:
    import mlflow

    client = mlflow.MlflowClient(uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    return list(client.search_runs(ids, max_results=5000)) if ids else []


def _children(runs: list[Any]) -> list[Any]:
    return [run for run in runs if "mlflow.parentRunId" in run.data.tags]


def _finished_children(uri: str) -> int:
    """FINISHED child runs so far: read-only SQL on a SQLite store (fast enough to catch a case as it ends)."""
    if not uri.startswith("sqlite:///"):
        return sum(run.info.status == "FINISHED" for run in _children(_runs(uri)))
    query = ("select count(*) from runs r join tags t on t.run_uuid = r.run_uuid and t.key = 'mlflow.parentRunId' "
             "where r.status = 'FINISHED'")  # fmt: skip
    with sqlite3.connect(f"file:{uri.removeprefix('sqlite:///')}?mode=ro", uri=True, timeout=30) as db:
        return int(db.execute(query).fetchone()[0])


def _wait_finished(uri: str, count: int, process: subprocess.Popen[bytes], timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if _finished_children(uri) >= count:
                return
        except Exception:  # the store may be busy or not created yet
            pass
        time.sleep(0.2)


def first_use(processes: int, locked: bool) -> Row:
    with tempfile.TemporaryDirectory() as folder:
        uri = f"sqlite:///{Path(folder) / 'new.db'}"
        start = time.time() + 15 + processes  # every process has imported mlflow by then
        workers = [
            subprocess.Popen([sys.executable, "-c", FIRST_USE, uri, str(start), "1" if locked else "0"],
                             env=_env(Path(folder), uri), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(processes)
        ]  # fmt: skip
        crashed = sum(worker.wait(timeout=600) != 0 for worker in workers)
    name = f"first use, {'locked' if locked else 'raw mlflow'}"
    return {"scenario": name, "processes": processes, "crashed": crashed}


def together(processes: int, server: bool) -> Row:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        tracking = _Server(folder) if server else None
        uri = tracking.url if tracking else f"sqlite:///{folder / 'mlflow.db'}"
        try:
            workers = [_pipeline(folder, uri) for _ in range(processes)]
            crashed = sum(worker.wait(timeout=1800) != 0 for worker in workers)
            runs = _runs(uri)
            with contextlib.chdir(folder):  # a SQLite store's artifacts are under ./mlruns of the workers' folder
                finished = [run for run in _children(runs) if run.info.status == "FINISHED"]
                foreign = sum(not _own_artifacts(uri, run) for run in finished)
        finally:
            if tracking:
                tracking.stop()
    return {"scenario": f"together, {'server' if server else 'new SQLite'}", "processes": processes,
            "crashed": crashed, "foreign artifacts": foreign,
            "left RUNNING": sum(run.info.status == "RUNNING" for run in runs)}  # fmt: skip


def _own_artifacts(uri: str, run: Any) -> bool:
    """Whether the run's ``result.json`` is its own case's, with the run's own throughput."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    result = json.loads(mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/result.json"))
    logged = float(run.data.metrics.get("throughput/samples_per_s", float("nan")))
    return bool(
        str(result["case"]["batch_size"]) == run.data.params.get("batch_size")
        and abs(float(result["metrics"]["throughput/samples_per_s"]) - logged) <= 1e-6 * max(1.0, logged)
    )


def interrupted(after: int, kill: bool) -> Row:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        process = _pipeline(folder, uri)
        _wait_finished(uri, after, process)
        before = {run.info.run_name for run in _children(_runs(uri)) if run.info.status == "FINISHED"}
        with contextlib.suppress(ProcessLookupError):  # finished before the fault: the row says so
            os.killpg(process.pid, signal.SIGKILL if kill else signal.SIGINT)
        process.wait(timeout=300)
        first = {run.info.run_id for run in _runs(uri) if "mlflow.parentRunId" not in run.data.tags}
        if kill:
            _pipeline(folder, uri, "--resume", "last").wait(timeout=1800)
        runs = _runs(uri)
    parents = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    killed = next(run for run in parents if run.info.run_id in first)
    row: Row = {"scenario": f"{'kill -9' if kill else 'ctrl-c'} after {after}, {'resume' if kill else 'no resume'}",
                "processes": 1, "finished before": len(before), "killed parent": killed.info.status,
                "left RUNNING": sum(run.info.status == "RUNNING" for run in runs)}  # fmt: skip
    children = _children(runs)
    if kill:
        final = next(run for run in parents if run.info.run_id not in first)
        under = [
            run.info.run_name
            for run in children
            if run.data.tags["mlflow.parentRunId"] == final.info.run_id and run.info.status == "FINISHED"
        ]
        cases = {f"baseline-eager-fp32-bs{size}" for size in BATCH_SIZES.split(",")}
        names = [run.info.run_name for run in children if run.info.status == "FINISHED"]
        row["re-measured"] = sum(names.count(case) - 1 for case in cases if names.count(case) > 1)
        row["lost"] = sum(under.count(case) != 1 for case in cases)
    else:
        finished = {run.info.run_name for run in children if run.info.status == "FINISHED"}
        row["lost"] = len(before - finished)
    return row


def server_restart() -> Row:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        tracking = _Server(folder)
        try:
            process = _pipeline(folder, tracking.url)
            _wait_finished(tracking.url, 1, process)
            tracking.stop()
            time.sleep(10)
            tracking.start()
            code = process.wait(timeout=1800)
            runs = _runs(tracking.url)
        finally:
            tracking.stop()
    parent = next(run for run in runs if "mlflow.parentRunId" not in run.data.tags)
    finished = {run.info.run_name for run in _children(runs) if run.info.status == "FINISHED"}
    return {"scenario": "server restarted after 1", "processes": 1, "crashed": int(code != 0),
            "logged late": int(parent.data.metrics.get("cases/logged_late", 0)),
            "lost": len(BATCH_SIZES.split(",")) - len(finished)}  # fmt: skip


class _Server:
    """An ``mlflow server`` on 127.0.0.1 with a new SQLite store, restartable on the same port."""

    def __init__(self, root: Path) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.root, self.url = root, f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
                   "--workers", "1", "--backend-store-uri", f"sqlite:///{self.root / 'server.db'}",
                   "--artifacts-destination", str(self.root / "artifacts")]  # fmt: skip
        log = (self.root / "server.log").open("ab")
        self.process = subprocess.Popen(command, cwd=self.root, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"mlflow server at {self.url} not healthy after 120 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=60)
        self.process = None


def _table(rows: list[Row]) -> str:
    columns = ["scenario", "processes", "crashed", "foreign artifacts", "left RUNNING", "finished before",
               "killed parent", "re-measured", "logged late", "lost"]  # fmt: skip
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(column, "")) for column in columns) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 processes, one fault point per kind")
    args = parser.parse_args()
    import mlflow  # noqa: F401 - imported once here, so that polling the store is quick

    counts = (3,) if args.quick else (3, 8)
    points = (2,) if args.quick else (1, 2, 4)
    plan: list[Callable[[], Row]] = []
    for count in counts:
        plan += [functools.partial(first_use, count, locked) for locked in (False, True)]
        plan += [functools.partial(together, count, server) for server in (False, True)]
    for point in points:
        plan += [functools.partial(interrupted, point, kill) for kill in (False, True)]
    plan.append(server_restart)
    rows = []
    for step in plan:
        rows.append(step())
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(_table(rows))


if __name__ == "__main__":
    main()
