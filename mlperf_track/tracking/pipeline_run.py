"""Run the whole pipeline under one MLflow parent run.

Inside ``mlflow run`` the parent is the run ``mlflow run`` created (``MLFLOW_RUN_ID`` is set and
``mlflow.start_run()`` resumes it); elsewhere a new run is started. How the parent ends:

- ``FINISHED``: the pipeline completed and at least one case produced a result (failed cases are FAILED
  child runs; the pipeline goes on after them).
- ``FAILED``: bad input, an error outside any case, or every case failed; ``error.type`` and
  ``error.message`` tags say why, and the error is re-raised (the CLI prints one line, exit 2 for bad input).
- ``KILLED``: Ctrl-C or SIGTERM; the open child run is KILLED too and everything logged so far is kept. Inside
  ``mlflow run`` the run ``mlflow run`` left in ``Default`` (when the results went to ``mlperf_track/<model>``)
  ends KILLED as well, before this process exits: ``mlflow run``'s own handler marks its run FAILED only when it
  is still running (:mod:`mlperf_track.cli.signals` explains the signals).
- left for later: when cases still wait in the outbox at the end (the tracking store was unreachable), the
  parent cannot be ended; ``parent.json`` in the outbox says how, and ``mlperf-track sync`` does it.

The parent records the process that owns it and keeps a heartbeat while the pipeline runs
(:mod:`mlperf_track.tracking.stale`), so a parent whose process was killed is closed as KILLED when the next
pipeline or study starts (stale runs of the experiment are closed first) or by ``mlperf-track runs cleanup``. It
also records the configuration's fingerprint, by which ``resume="last"`` finds it (:mod:`.resume`).

The experiment is :func:`~mlperf_track.tracking.setup.experiment_for`'s: the one named, else
``mlperf_track/<model>``. The command line's log file (third-party output included) is logged to the parent run
as ``logs/mlperf_track.log`` however the pipeline ends.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from mlperf_track import metrics as m
from mlperf_track.errors import MeasurementError, StorageError, describe_error
from mlperf_track.interrupts import release_unwound_frames
from mlperf_track.pipeline.events import PipelineOutcome
from mlperf_track.tracking import logging as tracking_logging
from mlperf_track.tracking.context import hardware_software_tags
from mlperf_track.tracking.listener import MlflowPipelineListener
from mlperf_track.tracking.outbox import OUTBOX_DIR, Outbox, is_unreachable
from mlperf_track.tracking.setup import configure_tracking, experiment_for, launcher_run_id
from mlperf_track.tracking.stale import Heartbeat, close_stale_runs_quietly, liveness_tags

if TYPE_CHECKING:
    from mlflow import ActiveRun

    from mlperf_track.pipeline.config import PipelineConfig
    from mlperf_track.pipeline.events import CaseKey, CaseOutcome, PipelineListener
    from mlperf_track.pipeline.load_stage import LoadStage

logger = logging.getLogger(__name__)

#: Tag marking a parent run made by the pipeline (reports and the tuner look for it).
ROLE_TAG = "mlperf_track.role"
#: Where the command line's log file goes in the parent run's artifacts.
LOG_ARTIFACT_DIR = "logs"
LOG_ARTIFACT_NAME = "mlperf_track.log"


class TrackingOutageError(StorageError):
    """The pipeline ran, but some results could not be logged: they wait in the outbox (exit code 3)."""

    exit_code = 3


@dataclass
class TrackedOutcome(PipelineOutcome):
    """A pipeline outcome and where it was logged.

    Attributes:
        parent_run_id: The parent run.
        experiment_id: Its experiment.
        outbox: The outbox folder of cases still waiting for the tracking store (``None``: everything is logged).
    """

    parent_run_id: str = ""
    experiment_id: str = ""
    outbox: Path | None = None


def log_log_file(run_id: str, log_file: Path) -> None:
    """Log ``log_file`` to ``run_id`` as ``logs/mlperf_track.log`` (the run may have ended); never raises."""
    import mlflow

    try:
        with tempfile.TemporaryDirectory() as folder:
            copy = Path(folder) / LOG_ARTIFACT_NAME
            shutil.copyfile(log_file, copy)
            mlflow.MlflowClient().log_artifact(run_id, str(copy), LOG_ARTIFACT_DIR)
    except Exception as error:  # the log is a convenience; losing it must not fail the run
        logger.warning("could not log %s to run %s: %s", log_file, run_id, error, exc_info=logger.isEnabledFor(10))


def start_parent_run(config: PipelineConfig | None = None, run_name: str | None = None) -> ActiveRun:
    """Start (or, inside ``mlflow run``, resume) the parent run and tag it with the machine's facts and owner.

    ``mlflow run`` creates its run without the fluent API, so run context providers never tag it: the
    hardware and software tags are set here explicitly, with the process that owns the run
    (:func:`~mlperf_track.tracking.stale.liveness_tags`).
    """
    import mlflow

    if os.environ.get("MLFLOW_RUN_ID") or run_name is None:
        run = mlflow.start_run()
    else:
        run = mlflow.start_run(run_name=run_name)
    tags = {**hardware_software_tags(), **liveness_tags(), ROLE_TAG: "pipeline"}
    if config is not None:
        tags["mlperf_track.model"] = config.model
    mlflow.set_tags(tags)
    return run


def record_configuration(run_id: str, config: PipelineConfig) -> None:
    """Log the resolved configuration (``config.*`` params) and its fingerprint on the parent, before any work,
    so that a run killed during its first minutes can be resumed by id or found by ``resume=last``."""
    import mlflow
    from mlflow.entities import Param, RunTag

    from mlperf_track.tracking.resume import config_fingerprint, fingerprint_params

    mlflow.MlflowClient().log_batch(
        run_id,
        params=[Param(key, value) for key, value in fingerprint_params(config).items()],
        tags=[RunTag(m.CONFIG_FINGERPRINT_TAG, config_fingerprint(config))],
    )


def end_open_runs(status: str) -> bool:
    """End every run on the fluent stack (children first) with ``status``; returns whether every end was written.

    MLflow pops a run off the stack before it writes the status, so an unreachable store leaves the stack empty
    (and the run for the stale-run cleanup or ``mlperf-track sync``): that error is logged, not raised.
    """
    import mlflow

    written = True
    while mlflow.active_run() is not None:
        try:
            mlflow.end_run(status=status)
        except Exception as error:
            if not is_unreachable(error):
                raise
            written = False
            logger.warning("could not end a run as %s: the tracking store is unreachable", status)
    return written


def fail_parent(error: BaseException) -> None:
    """Mark the active run FAILED with error tags, ending any nested run first (FAILED as well)."""
    import mlflow

    release_unwound_frames(error)  # an error that landed inside a store read must not lock out the writes below
    active = mlflow.active_run()
    if active is None:
        return
    parent_id = active.info.run_id
    while (run := mlflow.active_run()) is not None and run.info.run_id != parent_id:
        mlflow.end_run(status="FAILED")
    _mirror_on_launcher("FAILED", error)
    _record_end_status(parent_id, "FAILED")
    try:
        tracking_logging.mark_run_failed(error)
    except Exception as failure:
        if not is_unreachable(failure):
            raise
        logger.warning("could not mark the parent run FAILED: the tracking store is unreachable")
    end_open_runs("FAILED")


def _mirror_on_launcher(status: str, error: BaseException | None = None) -> None:
    """Inside ``mlflow run``, when the results went to another experiment: end ``mlflow run``'s own run the same
    way (KILLED), or tag why it failed (``mlflow run`` then marks it FAILED). Never raises."""
    run_id = launcher_run_id()
    if run_id is None:
        return
    import mlflow

    client = mlflow.MlflowClient()
    try:
        client.set_tag(run_id, m.END_STATUS_TAG, status)
        if error is not None:
            for key, value in tracking_logging.error_tags(error).items():
                client.set_tag(run_id, key, value)
        if status == "KILLED":
            client.set_terminated(run_id, "KILLED")
    except Exception as failure:
        logger.warning("could not mark mlflow run's run %s %s: %s", run_id, status, failure)


def _record_end_status(run_id: str, status: str) -> None:
    """Tag the status this process ends ``run_id`` with (``mlperf_track.end_status``); never raises."""
    import mlflow

    try:
        mlflow.MlflowClient().set_tag(run_id, m.END_STATUS_TAG, status)
    except Exception as error:
        logger.debug("could not tag the end status of %s: %s", run_id, error)


def run_tracked_pipeline(
    config: PipelineConfig,
    *,
    experiment: str | None = None,
    extra_listener: PipelineListener | None = None,
    log_file: Path | None = None,
    resume: str | None = None,
    load: LoadStage | None = None,
) -> TrackedOutcome:
    """Run the pipeline with every case logged to MLflow as it finishes.

    Args:
        config: The pipeline configuration (``keep_files=None``: the local files are deleted once logged).
        experiment: Experiment name, or ``None`` for ``$MLFLOW_EXPERIMENT_NAME``/``_ID`` when set, else
            ``mlperf_track/<model>`` (inside ``mlflow run``, see :mod:`mlperf_track.tracking.setup`).
        extra_listener: Another listener (a progress display) that receives every event after MLflow's.
        log_file: A log file to attach to the parent run at the end (``logs/mlperf_track.log``).
        resume: ``"last"`` or a parent run id: take over that run's finished cases (:mod:`.resume`).
        load: The pipeline's load stage (``--scenario``; its listener logs the load points).

    Returns:
        The pipeline outcome, with the parent run and the outbox folder when cases still wait there;
        ``outcome.interrupted`` is set when the pipeline stopped early.

    Raises:
        MlperfTrackError: Bad input or an error outside any case (the parent run is FAILED first).
        MeasurementError: Every case failed (the parent run is FAILED first).
        KeyboardInterrupt: Ctrl-C (the runs are KILLED first).
    """
    from mlperf_track.pipeline.events import ListenerGroup

    if config.keep_files is None:
        config = replace(config, keep_files=False)
    launched = bool(os.environ.get("MLFLOW_RUN_ID"))  # inside mlflow run (MLflow unsets it when the run ends)
    uri = configure_tracking(experiment_for(experiment, config.model))
    run = start_parent_run(config, run_name=f"{config.model}")
    parent_id, experiment_id = run.info.run_id, run.info.experiment_id
    heartbeat = Heartbeat(parent_id, uri).start()
    try:
        try:
            record_configuration(parent_id, config)
            close_stale_runs_quietly(experiment_id)
            adopted, resumed = _resume(config, resume, parent_id, experiment_id)
        except BaseException as error:
            fail_parent(error)
            raise
        outbox = Outbox(config.output_dir / OUTBOX_DIR, parent_id, uri, experiment_id)
        listener = MlflowPipelineListener(parent_id, outbox=outbox, adopted=adopted)
        group = ListenerGroup(listener, *([extra_listener] if extra_listener else []))
        outcome = _run_and_end(config, group, listener, resumed, launched=launched, load=load)
    finally:
        heartbeat.stop()
        if log_file is not None:
            log_log_file(parent_id, log_file)
    tracked = TrackedOutcome(**vars(outcome), parent_run_id=parent_id, experiment_id=experiment_id)
    if outbox.waiting:
        tracked.outbox = outbox.folder
    return tracked


def _resume(
    config: PipelineConfig, resume: str | None, parent_id: str, experiment_id: str
) -> tuple[dict[CaseKey, str], dict[CaseKey, CaseOutcome] | None]:
    """Find the run to resume and move its finished cases under ``parent_id``: (moved runs, their outcomes)."""
    if not resume:
        return {}, None
    import mlflow

    from mlperf_track.tracking.resume import adopt, find_resume_point

    client = mlflow.MlflowClient()
    point = find_resume_point(client, experiment_id, config, resume, current_run_id=parent_id)
    if point is None:
        return {}, None
    return adopt(client, point, parent_id), point.outcomes


def _end_parent(listener: MlflowPipelineListener, status: str, *, launched: bool) -> None:
    """End the parent with ``status``, or, when cases wait in the outbox, write down how it should end.

    A KILLED parent inside ``mlflow run`` (``launched``) is kept KILLED after ``mlflow run`` overwrites it
    (:mod:`mlperf_track.tracking.launcher_status`).
    """
    outbox = listener.outbox
    if outbox is not None and outbox.pending:
        path = outbox.save_parent(status, listener._config, listener._device, listener.notes)
        logger.warning("cases wait in %s; the parent run is ended when they are synced", path.parent)
    _record_end_status(listener.parent_run_id, status)
    if status == "KILLED":
        _mirror_on_launcher(status)
    try:
        ended = end_open_runs(status)
    except Exception as error:  # e.g. a locked database; not the outbox's case (the store answered)
        if status != "KILLED":
            raise
        # Interrupted: the process exits 130 anyway, and the protection below must still start.
        logger.warning(
            "could not end the parent run as %s (%s); the next start's stale-run cleanup ends it",
            status,
            describe_error(error),
        )
        ended = True
    if not ended and outbox is not None and not outbox.waiting:
        # Every case is logged but the store went away before the parent's end: sync rebuilds its report and ends it.
        path = outbox.save_parent(status, listener._config, listener._device, listener.notes)
        logger.warning("the parent run could not be ended; `mlperf-track sync` ends it from %s", path.parent)
    if status == "KILLED" and launched:
        from mlperf_track.tracking.launcher_status import protect

        protect([listener.parent_run_id, launcher_run_id() or ""])


def _run_and_end(
    config: PipelineConfig,
    group: PipelineListener,
    listener: MlflowPipelineListener,
    resumed: dict[CaseKey, CaseOutcome] | None,
    *,
    launched: bool = False,
    load: LoadStage | None = None,
) -> PipelineOutcome:
    """Run the pipeline and end the runs with the status its outcome (or error) calls for."""
    from mlperf_track.pipeline import run_pipeline

    try:
        outcome = run_pipeline(config, group, resumed=resumed, load=load)
    except KeyboardInterrupt as interrupt:
        release_unwound_frames(interrupt)  # an interrupted store read must not lock out the writes below
        logger.warning("interrupted: ending the open runs as KILLED; everything logged so far is kept")
        try:
            listener.abort("KILLED")
            if not listener.summary_logged and not (listener.outbox and listener.outbox.pending):
                listener.log_summary_artifacts()
        except Exception as error:  # the parent must still end KILLED (RUNNING reads as still measuring)
            logger.warning("while closing the interrupted runs: %s: %s", type(error).__name__, error)
        _end_parent(listener, "KILLED", launched=launched)
        raise
    except BaseException as error:
        listener.abort("FAILED")
        fail_parent(error)
        raise
    if outcome.interrupted:
        _end_parent(listener, "KILLED", launched=launched)
    elif outcome.outcomes and not outcome.results:
        all_failed = MeasurementError(f"all {len(outcome.outcomes)} cases failed; see the child runs' error tags")
        fail_parent(all_failed)
        raise all_failed
    else:
        _end_parent(listener, "FINISHED", launched=launched)
    return outcome
