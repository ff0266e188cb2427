"""``mlperf-track profile``: the tracked pipeline with torch.profiler on for every case.

Takes the flags of ``mlperf-track run``; each case's child run also gets, under ``profile/``, a Chrome/Perfetto
trace (``trace.json``, open it at https://ui.perfetto.dev), an interactive flame graph (``flamegraph.svg``),
the top operators (``top_ops.md``) and the Python-side overhead (cProfile, pyinstrument). Also the command of
the MLproject's ``profile`` entry point. Narrow the cases (``--runtime eager --batch-size 8``) for a focused
profile: every case is profiled.
"""

from __future__ import annotations

import argparse
from typing import Any

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
    from mlperf_track.cli.run import execute

    return execute(args, profile=True, shown_files=SHOWN_FILES)
