"""The ``mlperf-track`` command line: a thin dispatcher over one module per subcommand.

Each subcommand module exposes ``register(subparsers)``, which adds its parser and sets ``func`` to a
``run(args) -> int`` function. Errors derived from :class:`~mlperf_track.errors.MlperfTrackError` print one
line and exit with the error's code (2 for bad input); ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from mlperf_track import __version__
from mlperf_track.errors import MlperfTrackError

logger = logging.getLogger("mlperf_track")

#: Subcommand modules under ``mlperf_track.cli``, in help order. A missing module is skipped.
COMMANDS = ("bench", "run", "tune", "profile", "report", "compare", "export", "load")


class _ArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line and exit with code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available subcommand."""
    parser = _ArgumentParser(prog="mlperf-track", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"mlperf-track {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("--quiet", action="store_true", help="log warnings and errors only")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_ArgumentParser)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"mlperf_track.cli.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"mlperf_track.cli.{name}":
                raise
            continue
        module.register(subparsers)
    return parser


def configure_logging(debug: bool = False, quiet: bool = False) -> None:
    """Log to stderr: INFO by default, DEBUG with ``--debug``, WARNING with ``--quiet``."""
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    if not debug:
        for noisy in ("urllib3", "alembic", "matplotlib", "PIL", "torch._dynamo", "torch._inductor"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    configure_logging(args.debug, args.quiet)
    try:
        return int(args.func(args) or 0)
    except MlperfTrackError as error:
        if args.debug:
            logger.exception("failed")
        print(f"mlperf-track {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"mlperf-track {args.command}: interrupted", file=sys.stderr)
        return 130
