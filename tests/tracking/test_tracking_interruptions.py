"""Real interruptions: ``mlflow run`` sent SIGINT/SIGTERM, a worker killed with ``kill -9`` and resumed with
``-P resume=last``, and a real ``mlflow server`` stopped and restarted while a pipeline logs to it."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_tracking_server import _free_port, _wait_healthy
from tracking_helpers import isolated_mlflow

from mlperf_track import metrics as m
from mlperf_track.pipeline.config import PipelineConfig
from mlperf_track.pipeline.events import CaseOutcome, PipelineListener
from mlperf_track.spec import CaseSpec, TimingConfig

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.slow]
PARAMS = {
    "model": "tinycnn",
    "device": "cpu",
    "image_size": "16",
    "batch_sizes": "1,2,3,4,5",
    "epochs": "0",
    "runtimes": "eager",
    "precisions": "fp32",
    "variants": "none",
    "dataset": "synthetic",
    "max_time": "1",
    "num_threads": "1",
}
CASES = [f"baseline-eager-fp32-bs{size}" for size in range(1, 6)]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "PYTHONPATH": str(REPO),
        "MLPERF_TRACK_CACHE": str(tmp_path / "cache"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        env.pop(name, None)
    return env


def _mlflow_run(tmp_path: Path, *extra: str, **params: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "mlflow", "run", str(REPO), "--env-manager", "local", *extra]
    for key, value in {**PARAMS, **params}.items():
        command += ["-P", f"{key}={value}"]
    log = (tmp_path / f"mlflow-run-{time.monotonic_ns()}.log").open("wb")
    return subprocess.Popen(command, cwd=tmp_path, env=_env(tmp_path), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip


def _rows(tmp_path: Path, query: str) -> list[tuple[str, ...]]:
    try:
        with sqlite3.connect(f"file:{tmp_path / 'mlflow.db'}?mode=ro", uri=True, timeout=30) as db:
            return list(db.execute(query))
    except sqlite3.Error:
        return []


def _wait_for_finished_children(tmp_path: Path, count: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 400
    query = "select count(*) from runs r join tags t on t.run_uuid = r.run_uuid and t.key = 'mlflow.parentRunId' "
    while time.monotonic() < deadline and process.poll() is None:
        rows = _rows(tmp_path, query + "where r.status = 'FINISHED'")
        if rows and int(rows[0][0]) >= count:
            return
        time.sleep(0.3)
    raise AssertionError(f"no {count} finished case(s) before the run ended or the time ran out")


def _pipeline_process(launcher: int) -> int:
    """The ``python -m mlperf_track`` process below ``mlflow run`` (which starts it through ``bash -c``)."""
    pending, seen = [launcher], []
    while pending:
        pid = pending.pop()
        seen.append(pid)
        for task in Path(f"/proc/{pid}/task").iterdir():
            pending += [int(child) for child in (task / "children").read_text().split()]
    for pid in seen:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if argv[1:3] == [b"-m", b"mlperf_track"]:
            return pid
    raise AssertionError(f"no mlperf_track process below {launcher}: {seen}")


def _statuses(tmp_path: Path) -> list[tuple[str, str, str, str]]:
    """(experiment, run name, status, parent id) of every run."""
    return [
        (str(e), str(n), str(s), str(p or ""))
        for e, n, s, p in _rows(
            tmp_path,
            "select e.name, r.name, r.status, (select value from tags t where t.run_uuid = r.run_uuid and "
            "t.key = 'mlflow.parentRunId') from runs r join experiments e on e.experiment_id = r.experiment_id",
        )
    ]


def _logs(tmp_path: Path, lines: int = 60) -> str:
    """The last ``lines`` of every ``mlflow run`` log, for an assertion's message."""
    tails = []
    for log in sorted(tmp_path.glob("mlflow-run-*.log")):
        text = log.read_text(errors="replace").splitlines()[-lines:]
        tails.append(f"--- {log.name}\n" + "\n".join(text))
    return "\n".join(tails)


def _settle(tmp_path: Path, timeout_s: float = 90) -> list[tuple[str, str, str, str]]:
    """The runs once none is RUNNING and no FAILED pipeline parent waits for its KILLED to come back."""
    deadline = time.monotonic() + timeout_s
    while True:
        runs = _statuses(tmp_path)
        if all(status != "RUNNING" for _, _, status, _ in runs) and not any(
            status == "FAILED" and not parent for _, _, status, parent in runs
        ):
            return runs
        if time.monotonic() > deadline:
            return runs
        time.sleep(0.5)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_mlflow_run_ends_killed(tmp_path: Path, signum: int) -> None:
    """The terminal's Ctrl-C (SIGINT to the process group) or a SIGTERM to the group: the parent, and the run
    ``mlflow run`` left in ``Default``, end KILLED; the finished case stays FINISHED; nothing stays RUNNING."""
    # Twelve cases: the signal lands while several are still to run, even when the store is read late on a loaded
    # machine (with five, the last cases and the parent's end could be done before the signal arrived).
    process = _mlflow_run(tmp_path, batch_sizes=",".join(str(size) for size in range(1, 13)))
    _wait_for_finished_children(tmp_path, 1, process)
    os.killpg(process.pid, signum)
    process.wait(timeout=300)
    runs = _settle(tmp_path)
    parents = [(experiment, status) for experiment, _, status, parent in runs if not parent]
    assert sorted(parents) == [("Default", "KILLED"), ("mlperf_track/tinycnn", "KILLED")], f"{runs}\n{_logs(tmp_path)}"
    children = [status for _, _, status, parent in runs if parent]
    assert "FINISHED" in children and set(children) <= {"FINISHED", "KILLED"}, f"{runs}\n{_logs(tmp_path)}"


def test_a_worker_killed_with_kill_9_is_resumed_with_resume_last(tmp_path: Path) -> None:
    """The Must show: every case FINISHED exactly once in the end, and the killed parent KILLED."""
    process = _mlflow_run(tmp_path, "--experiment-name", "resumable")
    _wait_for_finished_children(tmp_path, 2, process)
    os.kill(_pipeline_process(process.pid), signal.SIGKILL)  # ours, not mlflow run: mlflow run marks it FAILED
    process.wait(timeout=120)
    resumed = _mlflow_run(tmp_path, "--experiment-name", "resumable", resume="last")
    assert resumed.wait(timeout=600) == 0
    runs = _settle(tmp_path)
    parents = {name: status for _, name, status, parent in runs if not parent}
    assert sorted(parents.values()) == ["FINISHED", "KILLED"], runs
    import mlflow

    client = mlflow.MlflowClient(_env(tmp_path)["MLFLOW_TRACKING_URI"])
    (experiment,) = [e for e in client.search_experiments() if e.name == "resumable"]
    top = [r for r in client.search_runs([experiment.experiment_id]) if "mlflow.parentRunId" not in r.data.tags]
    killed = next(r for r in top if r.info.status == "KILLED")
    new = next(r for r in top if r.info.status == "FINISHED")
    assert new.data.tags[m.RESUMED_FROM_TAG] == killed.info.run_id
    assert "mlflow run then marked it FAILED" in killed.data.tags[m.KILLED_REASON_TAG]
    finished = [name for _, name, status, parent in runs if parent and status == "FINISHED"]
    assert sorted(finished) == CASES  # every case exactly once, in the whole store
    under_new = [name for _, name, status, parent in runs if parent == new.info.run_id]
    assert sorted(under_new) == CASES
    assert new.data.metrics[m.CASES_RESUMED] >= 2


class _ServerControl(PipelineListener):
    """Stops the server after case ``stop_after`` ends or when case ``stop_at`` starts, and restarts it when case
    ``restart_at`` starts."""

    def __init__(
        self, server: _Server, stop_after: tuple[int, ...], restart_at: tuple[int, ...], stop_at: tuple[int, ...]
    ) -> None:
        self.server, self.stop_after, self.restart_at, self.stop_at = server, stop_after, restart_at, stop_at
        self.started = self.ended = 0

    def on_case_start(self, case: CaseSpec) -> None:
        self.started += 1
        if self.started in self.restart_at:
            self.server.start()
        if self.started in self.stop_at:
            self.server.stop()

    def on_case_end(self, outcome: CaseOutcome) -> None:
        self.ended += 1
        if self.ended in self.stop_after:
            self.server.stop()


class _Server:
    def __init__(self, root: Path) -> None:
        self.root, self.port = root, _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
                   "--workers", "1", "--backend-store-uri", f"sqlite:///{self.root / 'server.db'}",
                   "--artifacts-destination", str(self.root / "artifacts")]  # fmt: skip
        log = (self.root / "server.log").open("ab")
        self.process = subprocess.Popen(command, cwd=self.root, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)  # fmt: skip
        _wait_healthy(self.url, self.process)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None


@pytest.fixture
def server(tmp_path: Path) -> Iterator[_Server]:
    server = _Server(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_tracking_server_restarted_during_a_run_loses_nothing(
    server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Down after case 1, back at case 3 (case 2 logged late), down again from case 5 on (case 5 and the parent's
    end wait in the outbox past the end), back, then ``mlperf-track sync``: every case logged once with its own
    numbers, the parent FINISHED with its report."""
    import mlflow

    from mlperf_track.cli import main
    from mlperf_track.tracking.pipeline_run import run_tracked_pipeline

    monkeypatch.setenv("MLPERF_TRACK_OUTBOX_WAIT_S", "2")
    timing = TimingConfig(warmup_iters=1, warmup_s=0.0, min_iters=3, max_iters=20, max_time_s=0.2, target_rel_ci=0.5)
    config = PipelineConfig(model="tinycnn", device="cpu", batch_sizes=(1, 2, 3, 4, 5), image_size=16, epochs=0,
                            timing=timing, cache_dir=tmp_path / "cache", output_dir=tmp_path / "out")  # fmt: skip
    control = _ServerControl(server, stop_after=(1,), restart_at=(3,), stop_at=(5,))
    with isolated_mlflow(server.url, "outage", tmp_path) as experiment_id:
        started = time.monotonic()
        outcome = run_tracked_pipeline(config, extra_listener=control)
        assert time.monotonic() - started < 600
        assert outcome.outbox is not None and len(outcome.results) == 5
        server.start()
        assert main(["sync", str(tmp_path / "out")]) == 0
        client = mlflow.MlflowClient()
        runs = client.search_runs([experiment_id])
        parent = next(run for run in runs if "mlflow.parentRunId" not in run.data.tags)
        children = {run.info.run_name: run for run in runs if "mlflow.parentRunId" in run.data.tags}
        assert parent.info.status == "FINISHED" and parent.data.metrics["cases/completed"] == 5
        assert parent.data.metrics[m.CASES_LOGGED_LATE] >= 2  # 2 (3 too when its retry was not due yet) and 5
        assert "report/report.md" in {artifact.path for artifact in client.list_artifacts(parent.info.run_id, "report")}
        assert sorted(children) == CASES and {run.info.status for run in children.values()} == {"FINISHED"}
        for result in outcome.results:  # each run holds its own case's numbers (no file of another case)
            logged = children[result.case.name]
            assert logged.data.metrics[m.THROUGHPUT] == pytest.approx(result.metrics[m.THROUGHPUT])
            text = mlflow.artifacts.load_text(f"runs:/{logged.info.run_id}/result.json")
            assert f'"batch_size": {result.case.batch_size}' in text
        assert not list((tmp_path / "out" / "outbox").glob("*/*/entry.json"))
