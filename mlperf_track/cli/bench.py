"""``mlperf-track bench``: measure cases with the engine and print a table; no MLflow involved.

Takes the options of ``run`` with the same ``auto`` defaults, except ``--variants`` (default ``none``: the model as
it is); see ``mlperf-track bench --help`` and docs/architecture.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from mlperf_track import metrics as m
from mlperf_track.cli.common import add_pipeline_arguments, output_file, pipeline_config_from_args
from mlperf_track.engine.result import results_to_json
from mlperf_track.pipeline.events import PipelineOutcome

logger = logging.getLogger(__name__)

#: Columns of the printed table: (header, metric key, format).
COLUMNS = (
    ("p50 ms", m.LATENCY_P50, "{:.3f}"),
    ("p99 ms", m.LATENCY_P99, "{:.3f}"),
    ("samples/s", m.THROUGHPUT, "{:.1f}"),
    ("cv", m.LATENCY_CV, "{:.3f}"),
    ("RSS MB", m.CPU_RSS_PEAK, "{:.0f}"),
    ("GPU MB", m.GPU_PEAK_ALLOCATED, "{:.0f}"),
    ("top-1", m.ACCURACY_TOP1, "{:.3f}"),
    ("GFLOP/sample", m.MODEL_FLOPS, "{:.3f}"),
    ("prepare s", m.STARTUP_PREPARE, "{:.2f}"),
)


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


def print_outcome(outcome: PipelineOutcome, shown_files: tuple[str, ...] = ()) -> Console:
    """Print the table of cases, each failure's reason and the files named in ``shown_files``.

    Returns:
        The console used (wide when the output is not a terminal), for more lines.
    """
    # A pipe or a log file gets a wide table rather than rich's 80-column fallback.
    console = Console() if sys.stdout.isatty() else Console(width=200)
    console.print(render_table(outcome))
    for case_outcome in outcome.outcomes:
        if case_outcome.error is not None:
            error = case_outcome.error
            console.print(f"[red]{case_outcome.case.name} failed:[/red] {type(error).__name__}: {error}")
        for name in shown_files:
            if name in case_outcome.artifacts:
                console.print(f"{case_outcome.case.name}: {name} -> {case_outcome.artifacts[name]}")
    return console


def render_table(outcome: PipelineOutcome) -> Table:
    """One row per case; a metric that was not measured shows as ``-``."""
    table = Table(title=f"{outcome.config.model} on {outcome.outcomes[0].case.device if outcome.outcomes else '?'}")
    table.add_column("case")
    for header, _, _ in COLUMNS:
        table.add_column(header, justify="right")
    for case_outcome in outcome.outcomes:
        if case_outcome.result is None:
            table.add_row(case_outcome.case.name, *["failed"] + ["-"] * (len(COLUMNS) - 1))
            continue
        values = case_outcome.result.metrics
        cells = []
        for _, key, fmt in COLUMNS:
            value = values.get(key)
            if value is not None and key == m.MODEL_FLOPS:
                value = value / 1e9
            cells.append("-" if value is None else fmt.format(value))
        table.add_row(case_outcome.case.name, *cells)
    return table
