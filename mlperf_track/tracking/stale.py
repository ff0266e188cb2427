"""Runs whose process is gone are closed: liveness tags, a heartbeat, and the cleanup that reads them.

Every run mlperf_track starts records the process that owns it (tags ``mlperf_track.host``, ``.boot_id``,
``.pid``, ``.pid_start``; see :mod:`mlperf_track.liveness`), and parents refresh ``mlperf_track.heartbeat``
(Unix seconds) from a daemon thread every :data:`HEARTBEAT_INTERVAL_S` seconds while they work: one tag write
per interval, never more than one in flight, failures ignored (a heartbeat must never stop a run).

:func:`close_stale_runs` (called when a pipeline or a study starts, and by ``mlperf-track runs cleanup``) ends
as ``KILLED``, with ``mlperf_track.killed_reason`` and ``mlperf_track.closed_by`` tags:

- a ``RUNNING`` run whose process is gone: on this host (same host name and boot id) the pid does not exist,
  exited, or belongs to a newer process (another start time: pid reuse); on another host its heartbeat is
  older than the timeout (``max(timeout_s, 4 x its heartbeat interval)``);
- a ``FAILED`` run without ``error.type`` whose process is gone: our code tags every run it fails, so such a
  run was ended by someone else after its process died; that is ``mlflow run``, whose handler marks its run
  ``FAILED`` when the command it started exits non-zero (a ``kill -9``, the out-of-memory killer);
- the ``RUNNING`` children (trials, cases) of every run closed here.

Runs without these tags (other tools', or older ones) are never touched.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlperf_track import metrics as m
from mlperf_track.liveness import ProcessIdentity, is_alive

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

logger = logging.getLogger(__name__)

#: Seconds between heartbeats (``MLPERF_TRACK_HEARTBEAT_S`` overrides it).
HEARTBEAT_INTERVAL_S = 30.0
#: A run on another host without a heartbeat for this long is stale (at least 4 heartbeat intervals).
STALE_TIMEOUT_S = 300.0
HEARTBEAT_ENV = "MLPERF_TRACK_HEARTBEAT_S"
_ERROR_TYPE_TAG = "error.type"
_PARENT_TAG = "mlflow.parentRunId"
_PAGE = 1000


def heartbeat_interval() -> float:
    """The heartbeat interval: ``$MLPERF_TRACK_HEARTBEAT_S`` when it is a positive number, else the default."""
    try:
        value = float(os.environ.get(HEARTBEAT_ENV, ""))
    except ValueError:
        return HEARTBEAT_INTERVAL_S
    return value if value > 0 else HEARTBEAT_INTERVAL_S


def identity_tags(identity: ProcessIdentity | None = None) -> dict[str, str]:
    """The tags naming the process that owns a run (this one by default)."""
    owner = identity or ProcessIdentity.current()
    data = owner.to_dict()
    return {
        m.HOST_TAG: data["host"],
        m.BOOT_ID_TAG: data["boot"],
        m.PID_TAG: data["pid"],
        m.PID_START_TAG: data["start"],
    }


def liveness_tags() -> dict[str, str]:
    """Identity tags plus a first heartbeat and its interval (for a run this process will keep alive)."""
    return {
        **identity_tags(),
        m.HEARTBEAT_TAG: str(int(time.time())),
        m.HEARTBEAT_INTERVAL_TAG: f"{heartbeat_interval():g}",
    }


def owner_of(tags: dict[str, str]) -> ProcessIdentity | None:
    """The process a run's tags name, or ``None`` when the run has no identity tags."""
    if m.PID_TAG not in tags:
        return None
    return ProcessIdentity.from_dict(
        {
            "host": tags.get(m.HOST_TAG, ""),
            "boot": tags.get(m.BOOT_ID_TAG, ""),
            "pid": tags.get(m.PID_TAG, ""),
            "start": tags.get(m.PID_START_TAG, ""),
        }
    )


class Heartbeat:
    """Refreshes ``mlperf_track.heartbeat`` on a run from a daemon thread until :meth:`stop`.

    Args:
        run_id: The run.
        tracking_uri: Where it lives.
        interval_s: Seconds between beats (default :func:`heartbeat_interval`).
    """

    def __init__(self, run_id: str, tracking_uri: str, interval_s: float | None = None) -> None:
        self.run_id = run_id
        self.tracking_uri = tracking_uri
        self.interval_s = interval_s or heartbeat_interval()
        self.beats = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"mlperf_track-heartbeat-{run_id[:8]}", daemon=True)

    def start(self) -> Heartbeat:
        """Start beating; returns itself."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop beating (waits a moment for a beat in flight; the thread is a daemon and never blocks exit)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)

    def _loop(self) -> None:
        from mlflow import MlflowClient

        client = MlflowClient(self.tracking_uri)
        while not self._stop.wait(self.interval_s):
            try:
                client.set_tag(self.run_id, m.HEARTBEAT_TAG, str(int(time.time())))
                self.beats += 1
            except Exception as error:  # the tracking server may be away; the run goes on
                logger.debug("heartbeat of run %s failed: %s", self.run_id, error)


@dataclass(frozen=True)
class StaleRun:
    """A run :func:`close_stale_runs` closed (or, with ``dry_run``, would close)."""

    run_id: str
    run_name: str
    experiment_id: str
    previous_status: str
    reason: str
    #: The status it is ended with.
    status: str = "KILLED"


def _search(client: MlflowClient, experiment_ids: list[str], filter_string: str) -> list[Run]:
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs(experiment_ids, filter_string, max_results=_PAGE, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _all_experiment_ids(client: MlflowClient) -> list[str]:
    from mlflow.entities import ViewType

    ids: list[str] = []
    token = None
    while True:
        page = client.search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=_PAGE, page_token=token)
        ids.extend(experiment.experiment_id for experiment in page)
        token = page.token
        if not token:
            return ids


def why_stale(run: Run, *, timeout_s: float = STALE_TIMEOUT_S, now: float | None = None) -> str | None:
    """Why ``run`` belongs to a process that is gone, or ``None`` when it is alive (or cannot be judged)."""
    tags = run.data.tags
    owner = owner_of(tags)
    if owner is None:
        return None
    status = run.info.status
    recorded = tags.get(m.END_STATUS_TAG)
    if status == "FAILED" and (_ERROR_TYPE_TAG in tags or recorded in ("FAILED", "FINISHED")):
        return None  # failed by our own code, which said why (or finished, and mlflow run saw a non-zero exit)
    if status == "FAILED" and m.KILLED_REASON_TAG in tags:
        return None
    alive = is_alive(owner)
    where = f"process {owner.pid} on host {owner.host}"
    if alive is None:  # another host: only the heartbeat can tell
        return _silent_too_long(tags, status, where, timeout_s, now)
    if alive:
        return None
    if status == "FAILED" and recorded is not None:
        return (
            f"{where} ended the run {recorded}; mlflow run then overwrote it with FAILED "
            "(its _maybe_set_run_terminated never sees a string status as terminated)"
        )
    if status == "FAILED":
        return (
            f"{where} ended without closing the run (killed, e.g. kill -9 or out of memory, or crashed); "
            "mlflow run then marked it FAILED"
        )
    return f"{where} is gone (killed or crashed) and left the run RUNNING"


def _silent_too_long(tags: dict[str, str], status: str, where: str, timeout_s: float, now: float | None) -> str | None:
    if status != "RUNNING" or m.HEARTBEAT_TAG not in tags:
        return None
    try:
        beat, interval = float(tags[m.HEARTBEAT_TAG]), float(tags.get(m.HEARTBEAT_INTERVAL_TAG, "0") or 0)
    except ValueError:
        return None
    silent = (now or time.time()) - beat
    if silent <= max(timeout_s, 4 * interval):
        return None
    return f"no heartbeat from {where} for {silent:.0f} s (the process or its host is gone)"


def find_stale_runs(
    client: MlflowClient, experiment_ids: Iterable[str] | None = None, *, timeout_s: float = STALE_TIMEOUT_S
) -> list[StaleRun]:
    """Runs of ``experiment_ids`` (every active experiment when ``None``) whose process is gone."""
    ids = list(experiment_ids) if experiment_ids is not None else _all_experiment_ids(client)
    if not ids:
        return []
    candidates = _search(client, ids, "attributes.status = 'RUNNING'")
    candidates += _search(client, ids, f"attributes.status = 'FAILED' and tags.\"{m.PID_TAG}\" LIKE '%'")
    found = []
    for run in candidates:
        reason = why_stale(run, timeout_s=timeout_s)
        if reason is not None:
            info = run.info
            found.append(StaleRun(info.run_id, info.run_name or "", info.experiment_id, info.status, reason))
    closed = {item.run_id for item in found}
    running = [run for run in candidates if run.info.status == "RUNNING" and run.info.run_id not in closed]
    for run in running:  # children (trials, cases) of a run closed here
        parent = run.data.tags.get(_PARENT_TAG)
        if parent in closed:
            reason = f"its parent run {parent} was closed: its process is gone"
            found.append(StaleRun(run.info.run_id, run.info.run_name or "", run.info.experiment_id, "RUNNING", reason))
    return found


def close_stale_runs(
    client: MlflowClient | None = None,
    experiment_ids: Iterable[str] | None = None,
    *,
    timeout_s: float = STALE_TIMEOUT_S,
    dry_run: bool = False,
) -> list[StaleRun]:
    """End every stale run of ``experiment_ids`` (all experiments when ``None``) as KILLED, with the reason.

    Returns:
        The runs closed (with ``dry_run``: the runs that would be closed; nothing changes).
    """
    from mlflow import MlflowClient

    client = client or MlflowClient()
    stale = find_stale_runs(client, experiment_ids, timeout_s=timeout_s)
    closer = ProcessIdentity.current()
    for item in stale if not dry_run else ():
        client.set_tag(item.run_id, m.KILLED_REASON_TAG, item.reason)
        client.set_tag(item.run_id, m.CLOSED_BY_TAG, f"{closer.host}:{closer.pid}")
        client.set_terminated(item.run_id, item.status)
        logger.warning("closed run %s (%s) as %s: %s", item.run_id, item.run_name, item.status, item.reason)
    return stale


def close_stale_runs_quietly(experiment_id: str | None) -> list[StaleRun]:
    """:func:`close_stale_runs` for one experiment at the start of a run; never raises (a warning instead)."""
    if experiment_id is None:
        return []
    try:
        return close_stale_runs(experiment_ids=[experiment_id])
    except Exception as error:
        logger.warning("could not look for stale runs in experiment %s: %s", experiment_id, error)
        return []
