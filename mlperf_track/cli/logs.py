"""A quiet console: our messages, each said once; everything else in a log file that runs keep as an artifact.

What reaches the console (stderr):

- mlperf_track's own log records at INFO (WARNING with ``--quiet``, DEBUG with ``--debug``), each distinct message
  once per process: a note that applies to every case ("no RAPL package zones ...") is said once per run;
- with ``--verbose`` (or ``--debug``), also every third-party log record and native output.

What goes to the log file (``<output-dir>/logs/<command>-<time>-<pid>.log``, logged to the parent run as
``logs/mlperf_track.log``): every log record at INFO or above (DEBUG with ``--debug``) of every library, Python
warnings, and, unless ``--verbose``, what C/C++ code and subprocesses write to file descriptors 1 and 2
(torch's profiler ``USDT ... profiler_start`` lines, ``gpuGetDeviceCount failed with code 35`` on machines
without a GPU, inductor's compile workers), and what Python libraries write to ``sys.stderr`` themselves (torch's
own log handler prints ``W1201 ... torch/utils/_pytree.py ...`` lines there). Native output bypasses Python, so it
can only be caught at the file-descriptor level (:func:`native_output_to`). ``sys.stdout`` is pointed at a copy of
the terminal (tables are printed there); our log records, progress bars and error lines go to
:func:`terminal_stderr`, a copy of the terminal's stderr.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from mlperf_track.secrets import MaskingFormatter, mask_text, register_env_secrets

#: Where the log file goes in a run's artifacts.
LOG_ARTIFACT_DIR = "logs"
LOG_ARTIFACT_NAME = "mlperf_track.log"
#: Third-party loggers kept at WARNING even in the log file (their INFO is page after page of nothing).
NOISY_LOGGERS = ("urllib3", "alembic", "matplotlib", "PIL", "torch._dynamo", "torch._inductor", "fontTools")
_FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_CONSOLE_FORMAT = "%(asctime)s %(levelname)s %(message)s"


class OnceFilter(logging.Filter):
    """Let each distinct message through once (per logger and level); repeats still reach the log file."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[tuple[str, int, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, record.getMessage())
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


class OwnRecordsFilter(logging.Filter):
    """Let through mlperf_track's records only (third-party records go to the log file)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name == "mlperf_track" or record.name.startswith("mlperf_track.")


#: The terminal's stderr while :func:`native_output_to` sends file descriptor 2 to the log file (innermost last).
_TERMINALS: list[TextIO] = []


def terminal_stderr() -> TextIO:
    """Where our console output goes: the terminal's stderr, also while descriptor 2 goes to the log file."""
    return _TERMINALS[-1] if _TERMINALS else sys.stderr


def progress_console() -> Any:
    """A rich console on :func:`terminal_stderr` for progress bars (descriptor 2 may be going to the log file)."""
    from rich.console import Console

    return Console(file=terminal_stderr())


class ConsoleHandler(logging.StreamHandler):  # type: ignore[type-arg, unused-ignore]
    """A handler writing to :func:`terminal_stderr` as it is when a record is emitted."""

    def __init__(self) -> None:
        super().__init__(terminal_stderr())

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = terminal_stderr()
        super().emit(record)


def log_file_path(output_dir: Path, command: str) -> Path:
    """A new log file under ``output_dir/logs`` (created, empty), named after the command, time and process."""
    from mlperf_track.errors import ConfigError

    folder = output_dir / LOG_ARTIFACT_DIR
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        path.touch()
    except OSError as error:
        raise ConfigError("--output-dir", str(output_dir), "a folder this user can write", hint=str(error)) from None
    return path


def configure_logging(
    *, debug: bool = False, quiet: bool = False, verbose: bool = False, log_file: Path | None = None
) -> None:
    """Route log records: ours to the console (once each), everything to ``log_file``.

    Args:
        debug: DEBUG on the console and in the file, third-party records on the console.
        quiet: Only WARNING and above of ours on the console.
        verbose: Third-party records on the console too.
        log_file: The file every record goes to, or ``None``.
    """
    register_env_secrets()  # every record (ours, third-party, tracebacks) is masked: passwords never reach a log
    # Before mlflow is imported: let its records reach our handlers instead of its own stderr handler.
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    console = ConsoleHandler()
    console.setLevel(logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO)
    console.setFormatter(MaskingFormatter(_CONSOLE_FORMAT, datefmt="%H:%M:%S"))
    if not (verbose or debug):
        console.addFilter(OwnRecordsFilter())
    console.addFilter(OnceFilter())
    root.addHandler(console)
    if log_file is not None:
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setFormatter(MaskingFormatter(_FILE_FORMAT))
        root.addHandler(file_handler)
    logging.captureWarnings(True)
    _reroute_mlflow_logger()
    if not debug:
        for name in NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


def _reroute_mlflow_logger() -> None:
    """An mlflow imported before :func:`configure_logging` has its own stderr handler: send it through ours."""
    if "mlflow" not in sys.modules:
        return
    mlflow_logger = logging.getLogger("mlflow")
    for handler in list(mlflow_logger.handlers):
        mlflow_logger.removeHandler(handler)
    mlflow_logger.propagate = True
    mlflow_logger.setLevel(logging.NOTSET)


def _flush_c_stdio() -> None:
    """Flush C stdio buffers (``printf`` output of native libraries), so it lands before a descriptor moves."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).fflush(None)


def _is_on_descriptor(stream: Any, fd: int) -> bool:
    try:
        return bool(stream.fileno() == fd)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return False


def _terminal_copy(stream: Any, fd: int) -> TextIO:
    """A line-buffered text stream on a duplicate of ``fd``, encoded like ``stream``."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    errors = getattr(stream, "errors", None) or "backslashreplace"
    return open(os.dup(fd), "w", buffering=1, encoding=encoding, errors=errors)


@contextlib.contextmanager
def native_output_to(log_file: Path) -> Iterator[None]:
    """Point file descriptors 1 and 2 at ``log_file``; tables and our console output keep the terminal.

    ``sys.stdout`` moves to a copy of the terminal's stdout; ``sys.stderr`` stays on descriptor 2 (so libraries
    that write there land in the log) and :func:`terminal_stderr` returns a copy of the terminal's stderr. Child
    processes inherit the redirected descriptors. A Python stream that is not on its descriptor (a test's captured
    stream) is left as it is.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    _flush_c_stdio()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    stdout = sys.stdout
    copies: list[TextIO] = []
    terminal: TextIO | None = None
    try:
        with open(log_file, "ab", buffering=0) as sink:
            if _is_on_descriptor(sys.stdout, 1):
                copies.append(_terminal_copy(sys.stdout, saved[1]))
                sys.stdout = copies[-1]
            if _is_on_descriptor(sys.stderr, 2):
                terminal = _terminal_copy(sys.stderr, saved[2])
                copies.append(terminal)
                _TERMINALS.append(terminal)
            for fd in (1, 2):
                os.dup2(sink.fileno(), fd)
            yield
    finally:
        for copy in copies:
            with contextlib.suppress(Exception):
                copy.flush()
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        _flush_c_stdio()
        for fd, duplicate in saved.items():
            os.dup2(duplicate, fd)
            os.close(duplicate)
        sys.stdout = stdout
        if terminal is not None:
            _TERMINALS.remove(terminal)
        for copy in copies:
            copy.close()


def append_traceback(log_file: Path, error: BaseException) -> None:
    """Write ``error``'s traceback to the log file (the console shows one line)."""
    import traceback

    with contextlib.suppress(OSError), open(log_file, "a", encoding="utf-8") as handle:
        handle.write(mask_text("".join(traceback.format_exception(error))))
