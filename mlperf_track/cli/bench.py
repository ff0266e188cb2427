"""``mlperf-track bench``: measure cases with the engine and print a table; no MLflow involved."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from mlperf_track.cli.common import add_pipeline_arguments, pipeline_config_from_args, writable_file
from mlperf_track.cli.console import print_outcome
from mlperf_track.engine.result import results_to_json

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add the ``bench`` subcommand."""
    parser = subparsers.add_parser(
        "bench", help="benchmark a model's cases and print a table (no MLflow)", description=__doc__
    )
    add_pipeline_arguments(parser)
    parser.add_argument("--output", default=None, help="write every result as JSON to this file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the pipeline without tracking; exit 0 when every case succeeded, 1 when some failed."""
    from mlperf_track.pipeline.progress import ProgressListener
    from mlperf_track.pipeline.runner import run_pipeline

    config = pipeline_config_from_args(args)
    output = writable_file("--output", Path(args.output)) if args.output else None
    outcome = run_pipeline(config, ProgressListener())
    print_outcome(outcome)
    if output is not None:
        output.write_text(results_to_json(outcome.results), encoding="utf-8")
        logger.info("wrote %d results to %s", len(outcome.results), output)
    return 1 if outcome.failures else 0
