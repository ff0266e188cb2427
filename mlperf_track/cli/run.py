"""``mlperf-track run``: the whole pipeline, every case logged to MLflow as a nested run of one parent run.

Also the command of the MLproject's ``main`` and ``benchmark`` entry points. Options come from one table
(:mod:`mlperf_track.cli.options`); device-dependent ones default to ``auto``, which
:func:`mlperf_track.pipeline.defaults.auto_defaults` picks for the resolved device; ``none`` for ``--variants``
measures the baseline only. Runs go to the experiment ``--experiment-name`` names, else ``$MLFLOW_EXPERIMENT_NAME``,
else ``mlperf_track/<model>`` (see :func:`mlperf_track.tracking.setup.experiment_for`). Exit codes: 0 when the
pipeline completed (failed cases are FAILED child runs), 1 when every case failed, 2 for bad input (the parent run,
when ``mlflow run`` made one, is FAILED with ``error.type``/``error.message`` tags), 3 when the tracking server
stayed unreachable and cases wait in the outbox (``mlperf-track sync`` logs them), 130 on Ctrl-C or SIGTERM
(open runs end KILLED; see :mod:`mlperf_track.cli.signals`). ``--resume last`` (``-P resume=last``) continues an
interrupted run of the same configuration (:mod:`mlperf_track.tracking.resume`).
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from mlperf_track.cli.common import add_pipeline_arguments, output_file, pipeline_config_from_args
from mlperf_track.cli.options import read
from mlperf_track.errors import MlperfTrackError
from mlperf_track.secrets import mask_url

if TYPE_CHECKING:
    from mlperf_track.pipeline.config import PipelineConfig
    from mlperf_track.pipeline.events import PipelineListener

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add the ``run`` subcommand."""
    parser = subparsers.add_parser(
        "run", help="run the pipeline and log every case to MLflow", description=__doc__.split("\n\n")[0]
    )
    add_pipeline_arguments(parser, "run")
    parser.set_defaults(func=run, keeps_log=True)


def run_config_from_args(args: argparse.Namespace, *, profile: bool = False) -> PipelineConfig:
    """Build and validate the pipeline configuration (``auto`` resolved for the device)."""
    return pipeline_config_from_args(args, profile=profile)


def record_bad_input(error: MlperfTrackError) -> None:
    """Inside ``mlflow run``, mark its run FAILED with the error's tags (elsewhere no run exists yet).

    Nothing is tried when the tracking store itself is the problem; a failure here is logged to the log file only,
    so the console keeps its one line.
    """
    from mlperf_track.errors import StorageError

    if not os.environ.get("MLFLOW_RUN_ID") or isinstance(error, StorageError):
        return
    try:
        from mlperf_track.tracking.logging import mark_run_failed
        from mlperf_track.tracking.pipeline_run import start_parent_run
        from mlperf_track.tracking.setup import configure_tracking

        configure_tracking(None)
        start_parent_run()
        mark_run_failed(error)
    except Exception as failure:  # the one-line error message matters more than the tags
        logger.debug("could not mark the MLflow run as failed: %s", failure, exc_info=True)


def run(args: argparse.Namespace) -> int:
    """Run the tracked pipeline and print the table of cases."""
    return execute(args)


def execute(args: argparse.Namespace, *, profile: bool = False, footer: str | None = None) -> int:
    """Run the tracked pipeline (``profile`` forces profiling on), print the cases, then ``footer``.

    Returns:
        0 when the pipeline completed with at least one measured case, 1 when every case failed, 130 when
        interrupted.
    """
    from mlperf_track.cli.console import print_outcome
    from mlperf_track.cli.logs import progress_console
    from mlperf_track.cli.run_load import load_stage_from_args
    from mlperf_track.engine.result import results_to_json
    from mlperf_track.pipeline.progress import ProgressListener
    from mlperf_track.tracking.pipeline_run import TrackingOutageError, run_tracked_pipeline
    from mlperf_track.tracking.setup import check_tracking_store, resolve_tracking_uri

    try:
        config = run_config_from_args(args, profile=profile)
        load = load_stage_from_args(args, config) if hasattr(args, "scenario") else None
        output = output_file(args)
        resume = read(args, "resume") if hasattr(args, "resume") else None
        check_tracking_store(resolve_tracking_uri())
    except MlperfTrackError as error:
        record_bad_input(error)
        raise
    listener: PipelineListener = ProgressListener(progress_console())
    printer = None
    if load is not None:
        from mlperf_track.cli.load import LoadPrinter
        from mlperf_track.cli.run_load import TrackedLoadStage
        from mlperf_track.pipeline.events import ListenerGroup

        printer = LoadPrinter(None)
        tracked_load = TrackedLoadStage(echo=printer)
        load = replace(load, listener=tracked_load)
        listener = ListenerGroup(listener, tracked_load)
    outcome = run_tracked_pipeline(
        config,
        experiment=read(args, "experiment_name"),
        extra_listener=listener,
        log_file=getattr(args, "log_file", None),
        resume=resume,
        load=load,
    )
    console = print_outcome(outcome)
    if printer is not None and outcome.load is not None:
        printer.summary(outcome.load)
    if footer:
        console.print(footer)
    console.print(f"logged to {_where(outcome.experiment_id)}, parent run {outcome.parent_run_id}")
    if output is not None:
        output.write_text(results_to_json(outcome.results), encoding="utf-8")
    if outcome.outbox is not None:
        raise TrackingOutageError(
            f"the tracking store stayed unreachable: cases wait in {outcome.outbox}; "
            f"log them with: mlperf-track sync {outcome.outbox.parent}"
        )
    if outcome.interrupted:
        return 130
    if load is not None and outcome.load is not None and any(point.error for point in outcome.load.points):
        return 1  # a load point failed (its child run says why), as `mlperf-track load` reports it
    return 1 if outcome.outcomes and not outcome.results else 0


def _where(experiment_id: str) -> str:
    """``<tracking URI>: experiment <name>`` (the id when the name cannot be read)."""
    import mlflow

    try:
        name = mlflow.MlflowClient().get_experiment(experiment_id).name
    except Exception:  # the store may be unreachable: the id still says where
        name = experiment_id

    return f"{mask_url(mlflow.get_tracking_uri())}: experiment {name}"
