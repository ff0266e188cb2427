"""``mlperf-track sync DIR``: log what waits in an outbox (:mod:`mlperf_track.tracking.outbox`) and end its parents.

For each parent folder: every waiting case is logged into its child run (created when it was not), oldest first,
its row appended to the parent's ``summary.json``, and its folder deleted; then, when ``parent.json`` says how the
pipeline ended, the parent's counters, best case, recommendation and report are rebuilt from all its child runs
and the parent is ended with that status. A store that is still unreachable stops that parent's sync, leaving the
rest for the next try. Running sync twice logs nothing twice: a logged case is gone from the outbox.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlperf_track.tracking.outbox import (
    PARENT_FILE,
    config_from_json,
    is_unreachable,
    iter_parent_folders,
    log_entry,
    read_entries,
)
from mlperf_track.tracking.parent_report import ParentSummary

logger = logging.getLogger(__name__)


@dataclass
class SyncReport:
    """What a sync did."""

    logged: int = 0
    left: int = 0
    parents_ended: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _read_parent(folder: Path) -> dict[str, Any] | None:
    path = folder / PARENT_FILE
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def sync_outbox(directory: Path, *, tracking_uri: str | None = None) -> SyncReport:
    """Log everything waiting under ``directory`` (an output folder, its ``outbox/``, or one parent's folder).

    Args:
        directory: Where to look.
        tracking_uri: The store to log to; default ``$MLFLOW_TRACKING_URI``, else the one each entry recorded.
    """
    import mlflow

    report = SyncReport()
    for folder in iter_parent_folders(directory):
        entries = read_entries(folder)
        parent = _read_parent(folder)
        recorded = entries[0].data.get("tracking_uri") if entries else (parent or {}).get("tracking_uri")
        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or recorded
        if uri:
            mlflow.set_tracking_uri(uri)
        try:
            _sync_parent(folder, entries, parent, report)
        except Exception as error:
            if not is_unreachable(error):
                raise
            left = len(read_entries(folder))
            report.left += left
            report.errors.append(f"{folder.name}: the tracking store {uri} is unreachable ({left} case(s) left)")
            logger.warning("sync of %s stopped: the tracking store is unreachable", folder)
    return report


def _sync_parent(folder: Path, entries: list[Any], parent: dict[str, Any] | None, report: SyncReport) -> None:
    import mlflow

    client = mlflow.MlflowClient()
    parent_id = folder.name
    view = ParentSummary(parent_id)
    if parent is not None and parent.get("config"):
        view._config = config_from_json(parent["config"])
        view._device = parent.get("device")
        view.notes = dict(parent.get("notes") or {})
    for entry in entries:
        run_id = entry.data["run_id"] if entry.data.get("child_logged") else log_entry(entry, client)
        outcome = _outcome(entry)
        index = view.remember(outcome, run_id)
        view.publish_row(index, outcome.result)
        shutil.rmtree(entry.folder, ignore_errors=True)
        report.logged += 1
        logger.info("logged %s into run %s", entry.case.name, run_id)
    if parent is None:
        return
    _finish_parent(view, parent, client)
    (folder / PARENT_FILE).unlink()
    report.parents_ended.append(parent_id)
    try:
        folder.rmdir()
    except OSError:
        logger.debug("%s is not empty; kept", folder)


def _outcome(entry: Any) -> Any:
    from mlperf_track.pipeline.events import CaseOutcome
    from mlperf_track.tracking.outbox import RecordedError

    result = entry.result()
    error = None if result is not None else RecordedError.of(entry.data.get("error"))
    return CaseOutcome(case=entry.case, result=result, error=error)


def _finish_parent(view: ParentSummary, parent: dict[str, Any], client: Any) -> None:
    """Rebuild the parent's counters, best case and report from all its children, then end it."""
    from mlperf_track import metrics as m
    from mlperf_track.tracking.resume import child_outcomes

    full = ParentSummary(view.parent_run_id)
    full._config, full._device, full.notes = view._config, view._device, view.notes
    for run_id, outcome in reversed(child_outcomes(client, parent["experiment_id"], view.parent_run_id)):
        full.remember(outcome, run_id)
    full.log_totals()
    earlier = client.get_run(view.parent_run_id).data.metrics.get(m.CASES_LOGGED_LATE, 0.0)  # by the pipeline
    if view.rows or earlier:
        client.log_metric(view.parent_run_id, m.CASES_LOGGED_LATE, float(earlier) + len(view.rows))
    full.log_summary_artifacts()
    client.set_terminated(view.parent_run_id, parent["status"])
    logger.info("ended parent run %s as %s", view.parent_run_id, parent["status"])
