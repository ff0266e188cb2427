"""``mlperf-track report``: a Markdown, HTML and JSON report of an experiment's runs, logged to MLflow.

The report (summary table, best configurations, latency/throughput/memory against batch size, accuracy
against latency with the Pareto front, and a hardware comparison when the runs come from several machines)
is written to ``--output-dir`` and logged under ``report/`` of ``--run-id`` (a pipeline's parent run), of
the run ``mlflow run`` started (the MLproject's ``report`` entry point), or else of a new run named
``report`` in the experiment.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from mlperf_track.errors import ConfigError

logger = logging.getLogger(__name__)

#: Environment variable naming the default experiment (shared with the notebook).
EXPERIMENT_ENV = "MLPERF_TRACK_EXPERIMENT"


def register(subparsers: Any) -> None:
    """Add the ``report`` subcommand."""
    parser = subparsers.add_parser(
        "report",
        help="write and log a report of an experiment's runs",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument(
        "--experiment",
        default=os.environ.get(EXPERIMENT_ENV),
        help=f"experiment name (default: ${EXPERIMENT_ENV}, or the experiment of --run-id)",
    )
    parser.add_argument(
        "--output-dir", default=None, help="where the files go (default: mlperf_track_report/<experiment>)"
    )
    parser.add_argument(
        "--run-id", default=None, help="log the report to this run (default: the mlflow run's run, else a new run)"
    )
    parser.add_argument("--parent-run-id", default=None, help="report only on the child runs of this run")
    parser.add_argument("--no-log", action="store_true", help="write the files only; log nothing to MLflow")
    parser.set_defaults(func=run)


def _experiment_name(args: argparse.Namespace, tracking_uri: str) -> str:
    """``--experiment``, else the experiment of ``--run-id``/``--parent-run-id``."""
    if args.experiment:
        return str(args.experiment)
    run_id = args.parent_run_id or args.run_id
    if run_id:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri)
        return str(client.get_experiment(client.get_run(run_id).info.experiment_id).name)
    raise ConfigError("--experiment", None, "an experiment name", hint=f"or set ${EXPERIMENT_ENV}")


def run(args: argparse.Namespace) -> int:
    """Build the report, log it, and print where it went."""
    from mlperf_track.report.build import report_experiment
    from mlperf_track.tracking.setup import configure_tracking

    tracking_uri = configure_tracking(None)
    experiment = _experiment_name(args, tracking_uri)
    output_dir = Path(args.output_dir) if args.output_dir else Path("mlperf_track_report") / _safe(experiment)
    run_id = args.run_id or os.environ.get("MLFLOW_RUN_ID")
    files, logged_to = report_experiment(
        experiment,
        output_dir,
        tracking_uri=tracking_uri,
        run_id=run_id,
        log=not args.no_log,
        parent_run_id=args.parent_run_id,
    )
    print(f"report of experiment {experiment!r}: {files['report.html']} ({len(files)} files)")
    if logged_to:
        print(f"logged under report/ of run {logged_to} at {tracking_uri}")
    return 0


def _safe(name: str) -> str:
    """``name`` usable as a directory name."""
    return "".join(char if char.isalnum() or char in "-_." else "_" for char in name) or "experiment"
