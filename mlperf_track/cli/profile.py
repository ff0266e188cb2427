"""``mlperf-track profile``: the tracked pipeline with torch.profiler on for every case.

Takes the options of ``mlperf-track run`` with the same defaults, except ``--variants`` (default ``none``: the
model as it is), exactly as the MLproject's ``profile`` entry point. Each case's child run also gets, under
``profile/``, a Chrome/Perfetto trace (``trace.json``, open it at https://ui.perfetto.dev), an interactive flame
graph (``flamegraph.svg``), the top operators (``top_ops.md``) and the Python-side overhead (cProfile,
pyinstrument); the same files are in ``<output-dir>/<case>/``. Narrow the cases (``--runtimes eager
--batch-sizes 8``) for a focused profile: every case is profiled.
"""

from __future__ import annotations

import argparse
from typing import Any

from mlperf_track.cli.options import read

#: Profiler outputs named after the run, in this order.
SHOWN_FILES = ("flamegraph.svg", "trace.json", "top_ops.md")


def register(subparsers: Any) -> None:
    """Add the ``profile`` subcommand."""
    from mlperf_track.cli.common import add_pipeline_arguments

    parser = subparsers.add_parser(
        "profile",
        help="run the pipeline with torch.profiler traces and flame graphs, logged to MLflow",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    add_pipeline_arguments(parser, "profile")
    parser.set_defaults(func=run, keeps_log=True)


def run(args: argparse.Namespace) -> int:
    """Run the tracked pipeline with ``profile=True``; say once where each case's profiler files are."""
    from mlperf_track.cli.run import execute

    footer = (
        f"profiler files ({', '.join(SHOWN_FILES)}, ...) of each case: {read(args, 'output_dir')}/<case>/, "
        "and under profile/ in each case's child run"
    )
    return execute(args, profile=True, footer=footer)
