"""``mlperf-track export``: an experiment's runs, params, metrics, tags and raw samples as tables.

``--to results.duckdb`` (or ``.db``) writes one DuckDB database; ``--to results.parquet`` writes a directory
of Parquet files, one per table (``results.parquet/runs.parquet``, ``params``, ``metrics``, ``tags``,
``samples``). ``--experiment`` takes a name or a prefix (``mlperf_track``: every ``mlperf_track/<model>``
experiment). See :mod:`mlperf_track.report.export` for the schema.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from mlperf_track.cli.report import EXPERIMENT_ENV
from mlperf_track.errors import ConfigError


def register(subparsers: Any) -> None:
    """Add the ``export`` subcommand."""
    parser = subparsers.add_parser(
        "export",
        help="export an experiment to DuckDB or Parquet",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument(
        "--experiment",
        default=os.environ.get(EXPERIMENT_ENV),
        help=f"experiment name, or a prefix such as mlperf_track (default: ${EXPERIMENT_ENV})",
    )
    parser.add_argument("--to", required=True, metavar="PATH", help="results.duckdb, results.db or results.parquet")
    parser.add_argument("--no-samples", action="store_true", help="leave out the raw latency samples")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export and print the row count of every table."""
    from mlperf_track.report.export import export_experiment, export_format
    from mlperf_track.tracking.setup import configure_tracking

    if not args.experiment:
        raise ConfigError(
            "--experiment",
            None,
            "an experiment name or a prefix such as mlperf_track",
            hint=f"or set ${EXPERIMENT_ENV}",
        )
    target = Path(args.to).expanduser()
    kind = export_format(target)
    if not target.parent.resolve().is_dir():
        raise ConfigError("--to", str(target), "a path in an existing directory")
    tracking_uri = configure_tracking(None)
    counts = export_experiment(args.experiment, target, tracking_uri=tracking_uri, include_samples=not args.no_samples)
    summary = ", ".join(f"{name} {count}" for name, count in counts.items())
    print(f"exported experiment {args.experiment!r} to {target} ({kind}): {summary} rows")
    return 0
