"""Keep KILLED a run that ``mlflow run`` would overwrite with FAILED after our process exits.

Why (read in ``mlflow/projects/__init__.py``, MLflow 3.17): when the command exits non-zero, or when
``mlflow run`` itself is interrupted (after ``SubmittedRun.cancel()`` sent SIGTERM to the command and waited for
it), ``_wait_for`` calls ``_maybe_set_run_terminated(active_run, "FAILED")``. That helper means to leave a run
the command already ended alone, but it tests ``RunStatus.is_terminated(get_run(run_id).info.status)``:
``is_terminated`` takes the *numeric* status while ``RunInfo.status`` is the *string* ``"KILLED"``, so the test is
always false and every run is overwritten with FAILED. Nothing our process does before it exits survives that.

So a pipeline that ends its run KILLED inside ``mlflow run`` also records ``mlperf_track.end_status=KILLED`` and
starts this module as a small detached process (its own session, so the signals that stop ``mlflow run`` do not
reach it): it waits until ``mlflow run`` (our parent process) has exited, or until the run shows FAILED, and puts
back KILLED on every run it was given whose status is FAILED while its ``mlperf_track.end_status`` says
KILLED. It gives up after :data:`WAIT_S` seconds. The tracking URI comes from the environment, never the command
line (``ps`` shows that). Should the helper not run at all, the stale-run cleanup does the same later
(:func:`mlperf_track.tracking.stale.why_stale`).
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence

logger = logging.getLogger(__name__)

#: How long the helper waits for ``mlflow run`` to write its FAILED.
WAIT_S = 120.0
#: After ``mlflow run`` has exited, how long to keep looking (a shell between it and us exits first).
AFTER_EXIT_S = 15.0
_POLL_S = 0.5


def protect(run_ids: Sequence[str], status: str = "KILLED") -> subprocess.Popen[bytes] | None:
    """Start the detached helper that puts ``status`` back on ``run_ids`` after ``mlflow run`` exits.

    Returns:
        The helper process (``None`` when it could not be started; the stale-run cleanup remains).
    """
    ids = [run_id for run_id in run_ids if run_id]
    if not ids:
        return None
    command = [
        sys.executable,
        "-m",
        "mlperf_track.tracking.launcher_status",
        "--parent-pid",
        str(os.getppid()),
        "--status",
        status,
        *ids,
    ]
    try:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )
    except OSError as error:
        logger.warning("could not start the helper that keeps the run %s: %s", status, error)
        return None


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie has exited
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
    except OSError:
        return True


def restore(run_ids: Sequence[str], status: str, parent_pid: int, *, wait_s: float = WAIT_S) -> list[str]:
    """Wait for ``mlflow run`` to overwrite the runs, then put ``status`` back; returns the runs fixed."""
    from mlflow import MlflowClient

    from mlperf_track import metrics as m

    client = MlflowClient()
    pending = set(run_ids)
    fixed: list[str] = []
    deadline = time.monotonic() + wait_s
    exited_at: float | None = None
    while pending and time.monotonic() < deadline:
        if exited_at is None and not _pid_running(parent_pid):
            exited_at = time.monotonic()
        for run_id in sorted(pending):
            run = client.get_run(run_id)
            if run.info.status == "FAILED" and run.data.tags.get(m.END_STATUS_TAG) == status:
                client.set_terminated(run_id, status)
                pending.discard(run_id)
                fixed.append(run_id)
        if exited_at is not None and time.monotonic() - exited_at > AFTER_EXIT_S:
            break
        time.sleep(_POLL_S)
    return fixed


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mlperf_track.tracking.launcher_status --parent-pid PID --status KILLED RUN_ID...``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--status", default="KILLED")
    parser.add_argument("run_ids", nargs="+")
    args = parser.parse_args(argv)
    try:
        restore(args.run_ids, args.status, args.parent_pid)
    except Exception:  # nobody reads this process's output; the stale-run cleanup remains
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
