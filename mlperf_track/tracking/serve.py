"""Start ``mlflow models serve`` for a logged model on 127.0.0.1, wait (bounded) until it answers, stop it after.

Serving is MLflow's business, so it lives here; the load generator only sees a URL. The server runs with
``--env-manager local`` (this environment already has the model's dependencies; building a new one needs
conda/virtualenv and the network) in its own process group, which :class:`ModelServer` stops (SIGTERM, then
SIGKILL) and only that. Its output goes to a log file whose tail is quoted when it fails to start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from mlperf_track.errors import ConfigError, MlperfTrackError

logger = logging.getLogger(__name__)

LOCAL_HOST = "127.0.0.1"
#: Default bound on the wait for a started server to answer ``/ping``.
DEFAULT_HEALTH_TIMEOUT_S = 120.0


class ServeError(MlperfTrackError):
    """The model server could not be started or never became healthy (bounded wait)."""

    exit_code = 2


def free_port(host: str = LOCAL_HOST) -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def check_port_free(port: int, host: str = LOCAL_HOST, parameter: str = "--port") -> int:
    """Return ``port`` if nothing listens on it, else raise ConfigError (``port in use``)."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigError(parameter, port, "a TCP port in 1-65535")
    with socket.socket() as sock:
        # As the server will: SO_REUSEADDR lets a port with closed connections in TIME_WAIT be reused, while a
        # socket listening on it still makes the bind fail.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            hint = f"{host}:{port} is in use: {error.strerror}"
            raise ConfigError(parameter, port, "a free TCP port", hint=hint) from None
    return port


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


class ModelServer:
    """``mlflow models serve -m MODEL_URI`` on 127.0.0.1, as a context manager.

    Args:
        model_uri: A ``models:/``, ``runs:/`` or local model URI.
        port: The port (``None``: a free one); a port in use is refused up front.
        workers: Server worker processes (``--workers``).
        health_timeout_s: How long to wait for ``/ping`` to answer 200.
        request_timeout_s: The server's own per-request timeout (``--timeout``).
        log_dir: Where the server's log goes (a temporary directory by default).
    """

    def __init__(
        self,
        model_uri: str,
        *,
        port: int | None = None,
        workers: int = 1,
        health_timeout_s: float = DEFAULT_HEALTH_TIMEOUT_S,
        request_timeout_s: int = 60,
        log_dir: Path | None = None,
    ) -> None:
        if not model_uri:
            raise ConfigError("--serve", model_uri, "a model URI (models:/NAME/VERSION, runs:/RUN_ID/PATH or a path)")
        if not health_timeout_s > 0:
            raise ConfigError("--health-timeout", health_timeout_s, "a positive number of seconds")
        self.model_uri = model_uri
        self.port = check_port_free(port) if port is not None else free_port()
        self.workers = workers
        self.health_timeout_s = health_timeout_s
        self.request_timeout_s = request_timeout_s
        self._log_dir = log_dir
        self.log_path: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://{LOCAL_HOST}:{self.port}"

    def command(self) -> list[str]:
        """The ``mlflow models serve`` command line."""
        return [
            sys.executable, "-m", "mlflow", "models", "serve",
            "-m", self.model_uri,
            "--host", LOCAL_HOST,
            "--port", str(self.port),
            "--workers", str(self.workers),
            "--timeout", str(self.request_timeout_s),
            "--env-manager", "local",
        ]  # fmt: skip

    def start(self) -> str:
        """Start the server and wait until it is healthy; return its URL.

        Raises:
            ServeError: It exited, or did not answer ``/ping`` within ``health_timeout_s`` (it is stopped).
        """
        if self._log_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="mlperf_track_serve_")
            folder = Path(self._tmp.name)
        else:
            folder = self._log_dir
            folder.mkdir(parents=True, exist_ok=True)
        self.log_path = folder / f"serve-{self.port}.log"
        # mlflow models serve execs `uvicorn` by name: this interpreter's scripts must be on PATH (a venv that
        # is used without being activated otherwise fails with exit code 127).
        scripts = str(Path(sys.executable).parent)
        environment = {**os.environ, "PATH": os.pathsep.join([scripts, os.environ.get("PATH", "")])}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=environment
            )
        logger.info("serving %s at %s (pid %d, log %s)", self.model_uri, self.url, self.process.pid, self.log_path)
        try:
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self.url

    def wait_healthy(self) -> None:
        """Poll ``/ping`` until it answers 200, the process exits, or ``health_timeout_s`` passes."""
        assert self.process is not None and self.log_path is not None
        deadline = time.monotonic() + self.health_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServeError(
                    f"mlflow models serve exited with code {self.process.returncode} before it became healthy: "
                    f"{_log_tail(self.log_path) or 'no output'}"
                )
            with (
                contextlib.suppress(urllib.error.URLError, OSError),
                urllib.request.urlopen(f"{self.url}/ping", timeout=2) as response,
            ):
                if response.status == 200:
                    return
            time.sleep(0.25)
        raise ServeError(
            f"the model server at {self.url} did not become healthy within {self.health_timeout_s:g} s "
            f"(raise --health-timeout); last output: {_log_tail(self.log_path) or 'none'}"
        )

    def stop(self) -> None:
        """Stop the server's process group (SIGTERM, SIGKILL after 15 s) and wait until its port is free.

        uvicorn's worker processes share the listening socket and may outlive the master by a moment, so the
        leader's exit alone does not mean the port can be used again.
        """
        process = self.process
        if process is not None:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=15)
            if not _port_released(self.port, timeout_s=15):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                if not _port_released(self.port, timeout_s=15):
                    logger.warning("port %d is still in use after the model server was stopped", self.port)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=1)
        self.process = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> ModelServer:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def input_rows(model_uri: str, count: int = 16) -> tuple[tuple[Any, ...], tuple[str, ...]]:
    """Sample payload rows from a logged model's input example, and its column names (empty for tensors).

    Raises:
        ConfigError: The model has no input example (give a payload file instead).
    """
    import mlflow
    import numpy as np
    import pandas as pd

    from mlperf_track.errors import ModelLoadError

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # the download bar is noise here
    try:
        example = mlflow.models.Model.load(model_uri).load_input_example()
    except Exception as error:  # MLflow raises several types for a missing/unreadable model
        raise ModelLoadError(f"cannot read the model at {model_uri}: {type(error).__name__}: {error}") from None
    if example is None:
        raise ConfigError("--serve", model_uri, "a model logged with an input_example", hint="or pass --payload FILE")
    if isinstance(example, pd.DataFrame):
        rows = tuple(tuple(row) for row in example.to_numpy().tolist())
        return rows[:count], tuple(str(column) for column in example.columns)
    array = np.asarray(example)
    rows = tuple(array.tolist()) if array.ndim > 1 else (array.tolist(),)
    return rows[:count], ()


def _port_released(port: int, timeout_s: float) -> bool:
    """Wait until nothing listens on ``port`` (as :func:`check_port_free` sees it); whether it was within time."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            check_port_free(port)
            return True
        except ConfigError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
