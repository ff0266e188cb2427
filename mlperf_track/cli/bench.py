"""``mlperf-track bench``: measure cases with the engine and print a table; no MLflow involved.

Takes the options of ``run`` with the same ``auto`` defaults, except ``--variants`` (default ``none``: the model as
it is); see ``mlperf-track bench --help`` and docs/architecture.md.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from mlperf_track.cli.common import add_pipeline_arguments, output_file, pipeline_config_from_args
from mlperf_track.cli.console import print_outcome
from mlperf_track.engine.result import results_to_json

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add the ``bench`` subcommand."""
    parser = subparsers.add_parser(
        "bench", help="benchmark a model's cases and print a table (no MLflow)", description=__doc__
    )
    add_pipeline_arguments(parser, "bench")
    parser.set_defaults(func=run, keeps_log=True)


def run(args: argparse.Namespace) -> int:
    """Run the pipeline without tracking; exit 0 when every case succeeded, 1 when some failed."""
    from mlperf_track.cli.logs import progress_console
    from mlperf_track.pipeline.progress import ProgressListener
    from mlperf_track.pipeline.runner import run_pipeline

    config = pipeline_config_from_args(args)
    output = output_file(args)
    outcome = run_pipeline(config, ProgressListener(progress_console()))
    print_outcome(outcome)
    if output is not None:
        output.write_text(results_to_json(outcome.results), encoding="utf-8")
        logger.info("wrote %d results to %s", len(outcome.results), output)
    return 1 if outcome.failures else 0
