"""``mlperf-track runs cleanup``: close runs whose process is gone, and delete what killed processes left on disk.

A run started by mlperf_track records its host, pid and the pid's start time, and refreshes a heartbeat while it
works (:mod:`mlperf_track.tracking.stale`). ``runs cleanup`` ends as KILLED, with the reason in
``mlperf_track.killed_reason``, every run whose process is gone: on this host the pid is not running (or is another
process now), on another host the heartbeat is older than ``--timeout`` seconds; also runs ``mlflow run`` marked
FAILED after their process was killed. It then deletes the work folders (``<output-dir>/.work/``) of processes of
this host that are gone. Pipelines and studies do the first part for their own experiment whenever they start.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mlperf_track.cli import parsers as p


def register(subparsers: Any) -> None:
    """Add the ``runs`` subcommand group (``runs cleanup``)."""
    from mlperf_track.tracking.stale import STALE_TIMEOUT_S

    parser = subparsers.add_parser("runs", help="look after runs (runs cleanup: close runs whose process is gone)")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    cleanup = actions.add_parser("cleanup", help="close runs whose process is gone as KILLED", description=__doc__)
    cleanup.add_argument("--experiment", default=None, help="only this experiment or prefix (default: every one)")
    cleanup.add_argument(
        "--timeout",
        default=str(int(STALE_TIMEOUT_S)),
        help=f"seconds without a heartbeat after which a run of another host is stale (default: {STALE_TIMEOUT_S:g})",
    )
    cleanup.add_argument("--dry-run", action="store_true", help="only list what would be closed")
    cleanup.add_argument(
        "--output-dir",
        default="mlperf_track_output",
        help="whose .work/ folders to clean (default: mlperf_track_output)",
    )
    cleanup.set_defaults(func=run_cleanup)


def run_cleanup(args: argparse.Namespace) -> int:
    """Close stale runs, delete orphaned work folders, print what was done."""
    import mlflow
    from rich.console import Console
    from rich.table import Table

    from mlperf_track.pipeline.workdir import remove_orphans
    from mlperf_track.report.runs import resolve_experiments
    from mlperf_track.tracking.setup import configure_tracking
    from mlperf_track.tracking.stale import close_stale_runs

    timeout = p.positive_number("--timeout", args.timeout)
    configure_tracking(None)
    client = mlflow.MlflowClient()
    ids = None
    if args.experiment:
        ids = list(resolve_experiments(client, args.experiment))
    closed = close_stale_runs(client, ids, timeout_s=timeout, dry_run=args.dry_run)
    console = Console()
    verb = "would close" if args.dry_run else "closed"
    if closed:
        table = Table(title=f"{verb} {len(closed)} run(s) as KILLED")
        for header in ("run", "name", "was", "why"):
            table.add_column(header)
        for item in closed:
            table.add_row(item.run_id, item.run_name, item.previous_status, item.reason)
        console.print(table)
    else:
        console.print("no run left behind by a process that is gone")
    if not args.dry_run:
        removed = remove_orphans(Path(args.output_dir))
        if removed:
            console.print(f"deleted {len(removed)} work folder(s) of processes that are gone under {args.output_dir}")
    return 0
