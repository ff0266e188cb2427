"""Stale runs: closed when their process is gone (this host) or silent (another host); live and foreign runs kept."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time

import pytest

from mlperf_track import metrics as m
from mlperf_track.liveness import ProcessIdentity, start_ticks
from mlperf_track.tracking.stale import Heartbeat, close_stale_runs, identity_tags, liveness_tags


def _gone() -> ProcessIdentity:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.2)"])
    identity = dataclasses.replace(ProcessIdentity.current(), pid=child.pid, start=start_ticks(child.pid))
    child.wait()
    return identity


def _run(experiment_id: str, tags: dict[str, str], status: str = "RUNNING", parent: str | None = None) -> str:
    import mlflow

    client = mlflow.MlflowClient()
    extra = {"mlflow.parentRunId": parent} if parent else {}
    run_id: str = client.create_run(experiment_id, tags={**tags, **extra}).info.run_id
    if status != "RUNNING":
        client.set_terminated(run_id, status)
    return run_id


def _status(run_id: str) -> str:
    import mlflow

    return str(mlflow.MlflowClient().get_run(run_id).info.status)


def test_runs_of_gone_processes_are_killed_with_the_reason(tracking: str) -> None:
    import mlflow

    dead = identity_tags(_gone())
    parent = _run(tracking, dead)
    child = _run(tracking, {}, parent=parent)  # a trial without identity tags: closed with its parent
    mine = _run(tracking, liveness_tags())
    reused = _run(tracking, identity_tags(dataclasses.replace(ProcessIdentity.current(), start=1)))
    untagged = _run(tracking, {})
    closed = close_stale_runs(experiment_ids=[tracking])
    assert {item.run_id for item in closed} == {parent, child, reused}
    assert [_status(run_id) for run_id in (parent, child, reused)] == ["KILLED"] * 3
    assert _status(mine) == "RUNNING" and _status(untagged) == "RUNNING"
    tags = mlflow.MlflowClient().get_run(parent).data.tags
    assert "is gone" in tags[m.KILLED_REASON_TAG]
    assert tags[m.CLOSED_BY_TAG].endswith(f":{ProcessIdentity.current().pid}")
    assert close_stale_runs(experiment_ids=[tracking]) == []  # nothing twice


def test_other_hosts_are_judged_by_their_heartbeat(tracking: str) -> None:
    elsewhere = dataclasses.replace(ProcessIdentity.current(), host="another-host")
    old = {**identity_tags(elsewhere), m.HEARTBEAT_TAG: str(int(time.time()) - 3600), m.HEARTBEAT_INTERVAL_TAG: "30"}
    fresh = {**old, m.HEARTBEAT_TAG: str(int(time.time()))}
    silent, beating = _run(tracking, old), _run(tracking, fresh)
    assert {item.run_id for item in close_stale_runs(experiment_ids=[tracking], dry_run=True)} == {silent}
    assert _status(silent) == "RUNNING"  # a dry run changes nothing
    close_stale_runs(experiment_ids=[tracking], timeout_s=300)
    assert (_status(silent), _status(beating)) == ("KILLED", "RUNNING")


@pytest.mark.parametrize(
    ("extra", "closed"),
    [
        ({}, True),  # killed: mlflow run marked it FAILED, nobody said why
        ({m.END_STATUS_TAG: "KILLED"}, True),  # ended KILLED by us, overwritten by mlflow run
        ({"error.type": "ConfigError", m.END_STATUS_TAG: "FAILED"}, False),  # failed by our own code
        ({m.END_STATUS_TAG: "FINISHED"}, False),  # finished, then mlflow run saw a non-zero exit
    ],
)
def test_failed_runs_of_gone_processes(tracking: str, extra: dict[str, str], closed: bool) -> None:
    run_id = _run(tracking, {**identity_tags(_gone()), **extra}, status="FAILED")
    close_stale_runs(experiment_ids=[tracking])
    assert _status(run_id) == ("KILLED" if closed else "FAILED")


def test_the_heartbeat_refreshes_its_tag_until_stopped(tracking: str) -> None:
    import mlflow

    run_id = _run(tracking, {**liveness_tags(), m.HEARTBEAT_TAG: "0"})
    beat = Heartbeat(run_id, mlflow.get_tracking_uri(), interval_s=0.05).start()
    deadline = time.monotonic() + 30
    while beat.beats < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    beat.stop()
    assert beat.beats >= 2
    value = float(mlflow.MlflowClient().get_run(run_id).data.tags[m.HEARTBEAT_TAG])
    assert abs(value - time.time()) < 60
    stopped_at = beat.beats
    time.sleep(0.2)
    assert beat.beats == stopped_at
