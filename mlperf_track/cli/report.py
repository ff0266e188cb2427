"""``mlperf-track report``: a Markdown, HTML and JSON report of an experiment's runs, logged to MLflow.

The report has one section per question (model, image size, dataset; never ranked across): the configuration
to ship under the limits and its runner-up, a summary sorted by batch size then throughput, every case that
may not be recommended and why, latency/throughput/memory against batch size, accuracy against latency and
throughput with the Pareto front, and a hardware comparison when the runs come from several machines. It is
written to ``--output-dir`` and logged under ``report/`` of ``--run-id`` (a pipeline's parent run), of the
run ``mlflow run`` started (the MLproject's ``report`` entry point), or else of a new run named ``report``.
``--experiment`` takes a name or a prefix: ``mlperf_track`` reports every ``mlperf_track/<model>``
experiment. The answers are printed last.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlperf_track.errors import ConfigError
from mlperf_track.secrets import mask_url

if TYPE_CHECKING:
    from mlperf_track.engine.eligibility import Limits

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
        help=f"experiment name, or a prefix such as mlperf_track for every mlperf_track/<model> experiment "
        f"(default: ${EXPERIMENT_ENV}, or the experiment of --run-id)",
    )
    parser.add_argument(
        "--max-accuracy-drop",
        default="auto",
        help="largest top-1 drop (0.01 = 1 point) a recommended case may have; none: no limit "
        "(auto: the limit the pipelines ran with, 0.01 when they did not record one)",
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
    raise ConfigError(
        "--experiment",
        None,
        "an experiment name or a prefix (e.g. mlperf_track for every mlperf_track/<model> experiment)",
        hint=f"or set ${EXPERIMENT_ENV}",
    )


def report_limits(text: str) -> Limits | None:
    """``--max-accuracy-drop``: ``auto`` (``None``: what the pipelines recorded), ``none``, or a fraction."""
    from mlperf_track.engine.eligibility import Limits

    value = str(text).strip().lower()
    if value == "auto":
        return None
    if value == "none":
        return Limits()
    try:
        limit = float(value)
    except ValueError:
        limit = -1.0
    if not 0 <= limit <= 1:
        raise ConfigError("--max-accuracy-drop", text, "auto, none, or a fraction in [0, 1] (0.01 = 1 point)")
    return Limits(max_accuracy_drop=limit)


def run(args: argparse.Namespace) -> int:
    """Build the report, log it, and print where it went."""
    from mlperf_track.cli.console import make_console, print_report
    from mlperf_track.report.build import experiment_report
    from mlperf_track.tracking.setup import configure_tracking

    limits = report_limits(args.max_accuracy_drop)
    tracking_uri = configure_tracking(None)
    experiment = _experiment_name(args, tracking_uri)
    output_dir = Path(args.output_dir) if args.output_dir else Path("mlperf_track_report") / _safe(experiment)
    run_id = args.run_id or os.environ.get("MLFLOW_RUN_ID")
    report, files, logged_to = experiment_report(
        experiment,
        output_dir,
        tracking_uri=tracking_uri,
        run_id=run_id,
        log=not args.no_log,
        parent_run_id=args.parent_run_id,
        limits=limits,
    )
    console = make_console()
    console.print(f"report of {experiment!r}: {files['report.html']} ({len(files)} files)", soft_wrap=True)
    if logged_to:
        console.print(f"logged under report/ of run {logged_to} at {mask_url(tracking_uri)}", soft_wrap=True)
    print_report(report, console)
    return 0


def _safe(name: str) -> str:
    """``name`` usable as a directory name."""
    return "".join(char if char.isalnum() or char in "-_." else "_" for char in name) or "experiment"
