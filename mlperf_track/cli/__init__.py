"""The ``mlperf-track`` command line: a thin dispatcher over one module per subcommand.

Each subcommand module exposes ``register(subparsers)``, which adds its parser and sets ``func`` to a
``run(args) -> int`` function. Errors derived from :class:`~mlperf_track.errors.MlperfTrackError` print one
line and exit with the error's code (2 for bad input); ``--debug`` shows the traceback. ``--quiet``,
``--verbose`` and ``--debug`` work before and after the subcommand. Commands that measure (``bench``, ``run``,
``profile``, ``tune``) keep a log file (see :mod:`mlperf_track.cli.logs`).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from mlperf_track import __version__
from mlperf_track.cli.signals import interrupt_once
from mlperf_track.errors import MlperfTrackError
from mlperf_track.secrets import mask_text

logger = logging.getLogger("mlperf_track")

#: Subcommand modules under ``mlperf_track.cli``, in help order. A missing module is skipped.
COMMANDS = ("bench", "run", "tune", "profile", "report", "compare", "noise_floor", "export", "load", "runs", "sync")
#: Global flags, accepted before and after the subcommand: (flag, help).
GLOBAL_FLAGS = (
    ("--quiet", "show only warnings and errors of mlperf-track"),
    ("--verbose", "also show third-party logs and native output (torch, profiler, CUDA probes) on the console"),
    ("--debug", "show tracebacks and debug logs (implies --verbose)"),
)


class _ArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line, name close matches, and exit with code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        parsed, unknown = self.parse_known_args(args, namespace)
        if unknown:
            self.error(_unrecognized(self, parsed, unknown))
        return parsed


def _unrecognized(parser: argparse.ArgumentParser, parsed: argparse.Namespace, unknown: list[str]) -> str:
    """``unrecognized arguments: --batch-szie (did you mean --batch-sizes?)``: close flags of the subcommand."""
    command = getattr(parsed, "command", None)
    canonical = _flags_of(parser, command)
    message = f"unrecognized arguments: {' '.join(unknown)}"
    for word in unknown:
        if word.startswith("--"):
            matches = difflib.get_close_matches(word.split("=", 1)[0], list(canonical), n=5, cutoff=0.6)
            suggestions = list(dict.fromkeys(canonical[match] for match in matches))[:3]
            if suggestions:
                return f"{message} (did you mean {', '.join(suggestions)}?)"
    return f"{message} (see: {' '.join(filter(None, (parser.prog, command, '--help')))})"


def _flags_of(parser: argparse.ArgumentParser, command: str | None) -> dict[str, str]:
    """Every flag of the top-level parser and of ``command``, mapped to its canonical (first) spelling."""
    parsers = [parser]
    for action in parser._actions:  # argparse keeps subparsers here; there is no public accessor
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            parsers.append(action.choices[command])
    return {
        flag: action.option_strings[0]
        for each in parsers
        for action in each._actions
        if action.help != argparse.SUPPRESS
        for flag in action.option_strings
    }


def add_global_flags(parser: argparse.ArgumentParser, *, top_level: bool = False) -> None:
    """``--quiet``, ``--verbose``, ``--debug``; a subcommand's copy never overrides the top-level value."""
    for flag, text in GLOBAL_FLAGS:
        parser.add_argument(flag, action="store_true", default=False if top_level else argparse.SUPPRESS, help=text)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available subcommand."""
    parser = _ArgumentParser(prog="mlperf-track", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"mlperf-track {__version__}")
    add_global_flags(parser, top_level=True)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_ArgumentParser)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"mlperf_track.cli.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"mlperf_track.cli.{name}":
                raise
            continue
        module.register(subparsers)
    for subparser in subparsers.choices.values():
        add_global_flags(subparser)
    return parser


def configure_logging(debug: bool = False, quiet: bool = False, verbose: bool = False) -> None:
    """Console logging without a log file (``--debug``: DEBUG, ``--quiet``: warnings only)."""
    from mlperf_track.cli.logs import configure_logging as configure

    configure(debug=debug, quiet=quiet, verbose=verbose)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from mlperf_track.cli import logs

    verbose = bool(args.verbose or args.debug)
    log_file: Path | None = None
    try:
        if getattr(args, "keeps_log", False):
            log_file = logs.log_file_path(
                Path(getattr(args, "output_dir", None) or "mlperf_track_output"), args.command
            )
        args.log_file = log_file
        logs.configure_logging(debug=args.debug, quiet=args.quiet, verbose=verbose, log_file=log_file)
        redirect = logs.native_output_to(log_file) if log_file and not verbose else contextlib.nullcontext()
        with redirect, interrupt_once():  # Ctrl-C/SIGTERM once: the runs are closed before exit (cli/signals.py)
            code = int(args.func(args) or 0)
        if log_file is not None:
            logger.info("full log, third-party output included: %s", log_file)
        return code
    except MlperfTrackError as error:
        if args.debug:
            logger.exception("failed")
        if log_file is not None and error.exit_code == 2 and not log_file.stat().st_size:
            log_file.unlink()  # bad input found before anything ran: nothing worth keeping
            log_file = None
        elif log_file is not None:
            logs.append_traceback(log_file, error)
        hint = f" (details: {log_file})" if log_file is not None and error.exit_code != 2 else ""
        print(f"mlperf-track {args.command}: error: {mask_text(str(error))}{hint}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"mlperf-track {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        refused = _refused_by_tracking_server(error)
        if refused is None or args.debug:
            raise
        print(f"mlperf-track {args.command}: error: {refused}", file=sys.stderr)
        return 2


def _refused_by_tracking_server(error: Exception) -> str | None:
    """One line for an MLflow "not authenticated"/"not allowed" error (wrong credentials), else ``None``."""
    if type(error).__name__ != "MlflowException":
        return None
    from mlperf_track.tracking.credentials import auth_error_message

    return auth_error_message(error)
