"""``mlperf-track sync [DIR]``: log the results that waited in the outbox while the tracking server was away.

``DIR`` is the output folder (default ``mlperf_track_output``), its ``outbox/`` folder, or one parent run's folder
in it. Each waiting case is logged into its child run, oldest first; a parent whose pipeline ended while the
server was away gets its summary, best case and report and is ended as the pipeline ended. Runs go to
``$MLFLOW_TRACKING_URI`` when set, else to the store each case recorded (``--tracking-uri`` overrides both). Exit
codes: 0 when nothing is left, 3 when the store is still unreachable (run it again later), 2 for a ``DIR`` that
does not exist.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mlperf_track.errors import ConfigError


def register(subparsers: Any) -> None:
    """Add the ``sync`` subcommand."""
    parser = subparsers.add_parser(
        "sync", help="log results that waited in the outbox for the tracking server", description=__doc__
    )
    parser.add_argument(
        "directory",
        nargs="?",
        default="mlperf_track_output",
        metavar="DIR",
        help="output folder, its outbox/ folder, or one parent run's folder in it (default: mlperf_track_output)",
    )
    parser.add_argument(
        "--tracking-uri",
        default=None,
        help="log here instead (default: $MLFLOW_TRACKING_URI, else the store each waiting case recorded)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Sync and say what was logged and what is left."""
    from mlperf_track.tracking.pipeline_run import TrackingOutageError
    from mlperf_track.tracking.setup import configure_http_retries
    from mlperf_track.tracking.sync import sync_outbox

    directory = Path(args.directory)
    if not directory.is_dir():
        raise ConfigError("DIR", str(directory), "an existing folder (the output folder or its outbox/)")
    configure_http_retries()
    report = sync_outbox(directory, tracking_uri=args.tracking_uri)
    ended = f"; ended {len(report.parents_ended)} parent run(s)" if report.parents_ended else ""
    if not report.logged and not report.left and not report.parents_ended:
        print(f"nothing waits in {directory}")
        return 0
    print(f"logged {report.logged} case(s){ended}")
    if report.left:
        raise TrackingOutageError(f"{report.left} case(s) still wait: {'; '.join(report.errors)}")
    return 0
