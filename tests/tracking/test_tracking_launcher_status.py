"""After ``mlflow run`` overwrites a KILLED run with FAILED (its string-vs-number status check), KILLED comes back."""

from __future__ import annotations

import subprocess
import sys

from mlperf_track import metrics as m
from mlperf_track.tracking.launcher_status import restore


def test_killed_is_put_back_and_other_runs_are_left_alone(tracking: str) -> None:
    import mlflow
    from mlflow.entities import RunStatus

    client = mlflow.MlflowClient()
    ours = client.create_run(tracking, tags={m.END_STATUS_TAG: "KILLED"}).info.run_id
    failed = client.create_run(tracking, tags={m.END_STATUS_TAG: "FAILED", "error.type": "X"}).info.run_id
    for run_id in (ours, failed):
        client.set_terminated(run_id, "KILLED" if run_id == ours else "FAILED")
    # What mlflow run's _maybe_set_run_terminated does: the string status never counts as terminated.
    assert not RunStatus.is_terminated(client.get_run(ours).info.status)  # type: ignore[arg-type]
    client.set_terminated(ours, "FAILED")
    launcher = subprocess.Popen([sys.executable, "-c", "pass"])
    launcher.wait()  # mlflow run has exited
    fixed = restore([ours, failed], "KILLED", launcher.pid, wait_s=5)
    assert fixed == [ours]
    assert client.get_run(ours).info.status == "KILLED" and client.get_run(failed).info.status == "FAILED"
