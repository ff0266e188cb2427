"""``mlperf-track profile``: the tracked pipeline with torch.profiler on for every case.

Takes the flags of ``mlperf-track run``; each case's child run also gets, under ``profile/``, a Chrome/Perfetto
trace (``trace.json``, open it at https://ui.perfetto.dev), an interactive flame graph (``flamegraph.svg``),
the top operators (``top_ops.md``) and the Python-side overhead (cProfile, pyinstrument). Also the command of
the MLproject's ``profile`` entry point. Narrow the cases (``--runtime eager --batch-size 8``) for a focused
profile: every case is profiled.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from typing import Any

from mlperf_track.errors import MlperfTrackError

logger = logging.getLogger(__name__)

#: Profiler outputs listed after the run, in this order.
SHOWN_FILES = ("flamegraph.svg", "trace.json", "top_ops.md")


def register(subparsers: Any) -> None:
    """Add the ``profile`` subcommand."""
    from mlperf_track.cli.run import add_run_arguments

    parser = subparsers.add_parser(
        "profile",
        help="run the pipeline with torch.profiler traces and flame graphs, logged to MLflow",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    add_run_arguments(parser)
    parser.set_defaults(func=run, profile="true")


def run(args: argparse.Namespace) -> int:
    """Run the tracked pipeline with ``profile=True`` and list each case's profiler files."""
    import mlflow
    from rich.console import Console

    from mlperf_track.cli.bench import render_table
    from mlperf_track.cli.run import record_bad_input, run_config_from_args, sigterm_as_interrupt
    from mlperf_track.pipeline.progress import ProgressListener
    from mlperf_track.tracking.pipeline_run import run_tracked_pipeline

    try:
        config = replace(run_config_from_args(args), profile=True)
    except MlperfTrackError as error:
        record_bad_input(error)
        raise
    with sigterm_as_interrupt():
        outcome = run_tracked_pipeline(config, experiment=args.experiment, extra_listener=ProgressListener())
    console = Console()
    console.print(render_table(outcome))
    for case_outcome in outcome.outcomes:
        if case_outcome.error is not None:
            console.print(
                f"[red]{case_outcome.case.name} failed:[/red] {type(case_outcome.error).__name__}: {case_outcome.error}"
            )
            continue
        for name in SHOWN_FILES:
            if name in case_outcome.artifacts:
                console.print(f"{case_outcome.case.name}: {name} -> {case_outcome.artifacts[name]}")
    last = mlflow.last_active_run()
    if last is not None:
        console.print(
            f"logged to {mlflow.get_tracking_uri()}: parent run {last.info.run_id} "
            "(profiler files under profile/ of each child run)"
        )
    return 130 if outcome.interrupted else 0
