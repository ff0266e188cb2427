"""Run the whole pipeline under one MLflow parent run.

Inside ``mlflow run`` the parent is the run ``mlflow run`` created (``MLFLOW_RUN_ID`` is set and
``mlflow.start_run()`` resumes it); elsewhere a new run is started. How the parent ends:

- ``FINISHED``: the pipeline completed and at least one case produced a result (failed cases are FAILED
  child runs; the pipeline goes on after them).
- ``FAILED``: bad input, an error outside any case, or every case failed; ``error.type`` and
  ``error.message`` tags say why, and the error is re-raised (the CLI prints one line, exit 2 for bad input).
- ``KILLED``: Ctrl-C; the open child run is KILLED too and everything logged so far is kept.

The experiment is :func:`~mlperf_track.tracking.setup.experiment_for`'s: the one named, else
``mlperf_track/<model>``. The command line's log file (third-party output included) is logged to the parent run
as ``logs/mlperf_track.log`` however the pipeline ends.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from mlperf_track.errors import MeasurementError
from mlperf_track.tracking import logging as tracking_logging
from mlperf_track.tracking.context import hardware_software_tags
from mlperf_track.tracking.listener import MlflowPipelineListener
from mlperf_track.tracking.setup import configure_tracking, experiment_for

if TYPE_CHECKING:
    from mlflow import ActiveRun

    from mlperf_track.pipeline.config import PipelineConfig
    from mlperf_track.pipeline.events import PipelineListener, PipelineOutcome

logger = logging.getLogger(__name__)

#: Tag marking a parent run made by the pipeline (reports and the tuner look for it).
ROLE_TAG = "mlperf_track.role"
#: Where the command line's log file goes in the parent run's artifacts.
LOG_ARTIFACT_DIR = "logs"
LOG_ARTIFACT_NAME = "mlperf_track.log"


def log_log_file(run_id: str, log_file: Path) -> None:
    """Log ``log_file`` to ``run_id`` as ``logs/mlperf_track.log`` (the run may have ended); never raises."""
    import mlflow

    try:
        with tempfile.TemporaryDirectory() as folder:
            copy = Path(folder) / LOG_ARTIFACT_NAME
            shutil.copyfile(log_file, copy)
            mlflow.MlflowClient().log_artifact(run_id, str(copy), LOG_ARTIFACT_DIR)
    except Exception:  # the log is a convenience; losing it must not fail the run
        logger.warning("could not log %s to run %s", log_file, run_id, exc_info=True)


def start_parent_run(config: PipelineConfig | None = None, run_name: str | None = None) -> ActiveRun:
    """Start (or, inside ``mlflow run``, resume) the parent run and tag it with the machine's facts.

    ``mlflow run`` creates its run without the fluent API, so run context providers never tag it: the
    hardware and software tags are set here explicitly.
    """
    import mlflow

    if os.environ.get("MLFLOW_RUN_ID") or run_name is None:
        run = mlflow.start_run()
    else:
        run = mlflow.start_run(run_name=run_name)
    tags = {**hardware_software_tags(), ROLE_TAG: "pipeline"}
    if config is not None:
        tags["mlperf_track.model"] = config.model
    mlflow.set_tags(tags)
    return run


def end_open_runs(status: str) -> None:
    """End every run on the fluent stack (children first) with ``status``."""
    import mlflow

    while mlflow.active_run() is not None:
        mlflow.end_run(status=status)


def fail_parent(error: BaseException) -> None:
    """Mark the active run FAILED with error tags, ending any nested run first (FAILED as well)."""
    import mlflow

    active = mlflow.active_run()
    if active is None:
        return
    parent_id = active.info.run_id
    while (run := mlflow.active_run()) is not None and run.info.run_id != parent_id:
        mlflow.end_run(status="FAILED")
    tracking_logging.mark_run_failed(error)
    end_open_runs("FAILED")


def run_tracked_pipeline(
    config: PipelineConfig,
    *,
    experiment: str | None = None,
    extra_listener: PipelineListener | None = None,
    log_file: Path | None = None,
) -> PipelineOutcome:
    """Run the pipeline with every case logged to MLflow as it finishes.

    Args:
        config: The pipeline configuration.
        experiment: Experiment name, or ``None`` for ``$MLFLOW_EXPERIMENT_NAME``/``_ID`` when set, else
            ``mlperf_track/<model>`` (inside ``mlflow run``, see :mod:`mlperf_track.tracking.setup`).
        extra_listener: Another listener (a progress display) that receives every event after MLflow's.
        log_file: A log file to attach to the parent run at the end (``logs/mlperf_track.log``).

    Returns:
        The pipeline outcome; ``outcome.interrupted`` is set when the pipeline stopped early.

    Raises:
        MlperfTrackError: Bad input or an error outside any case (the parent run is FAILED first).
        MeasurementError: Every case failed (the parent run is FAILED first).
        KeyboardInterrupt: Ctrl-C (the runs are KILLED first).
    """
    from mlperf_track.pipeline.events import ListenerGroup

    configure_tracking(experiment_for(experiment, config.model))
    run = start_parent_run(config, run_name=f"{config.model}")
    listener = MlflowPipelineListener(run.info.run_id)
    group = ListenerGroup(listener, *([extra_listener] if extra_listener else []))
    try:
        return _run_and_end(config, group, listener)
    finally:
        if log_file is not None:
            log_log_file(run.info.run_id, log_file)


def _run_and_end(config: PipelineConfig, group: PipelineListener, listener: MlflowPipelineListener) -> PipelineOutcome:
    """Run the pipeline and end the runs with the status its outcome (or error) calls for."""
    from mlperf_track.pipeline import run_pipeline

    try:
        outcome = run_pipeline(config, group)
    except KeyboardInterrupt:
        logger.warning("interrupted: ending the open runs as KILLED; everything logged so far is kept")
        listener.abort("KILLED")
        if not listener.summary_logged:
            listener.log_summary_artifacts()
        end_open_runs("KILLED")
        raise
    except BaseException as error:
        listener.abort("FAILED")
        fail_parent(error)
        raise
    if outcome.interrupted:
        end_open_runs("KILLED")
    elif outcome.outcomes and not outcome.results:
        all_failed = MeasurementError(f"all {len(outcome.outcomes)} cases failed; see the child runs' error tags")
        fail_parent(all_failed)
        raise all_failed
    else:
        end_open_runs("FINISHED")
    return outcome
