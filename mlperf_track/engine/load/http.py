"""The client side of a load run over HTTP: one POST per batch, with serialization inside the timed call.

:class:`HttpInference` is an ordinary inference callable for the load generator: a batch of ``n`` samples is
one JSON request to an MLflow scoring server's ``/invocations`` (``{"inputs": [...]}`` or
``{"dataframe_split": ...}``), so the measured compute time is the end-to-end service time a client sees:
serialization, the network stack, the server's own queueing and the model. Each worker thread keeps one
keep-alive connection with ``TCP_NODELAY`` (``http.client``: no pool to tune, nothing between us and the
socket). A failed request
raises :class:`RequestError` with its kind (``timeout``, ``connection``, ``http``), which the load
generator counts per kind.

Every address must be on this machine (:func:`check_local_url`): the generator is a load test, and pointing
it at someone else's host is a mistake we refuse up front.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import threading
import urllib.parse
from collections.abc import Sequence
from typing import Any

from mlperf_track.errors import ConfigError, MeasurementError
from mlperf_track.secrets import mask_url

#: Request bodies the MLflow scoring server accepts that this client can build.
BODY_FORMATS = ("inputs", "dataframe_split", "instances")


class RequestError(MeasurementError):
    """One HTTP request failed.

    Attributes:
        kind: ``timeout``, ``connection`` (refused, reset, closed) or ``http`` (a 4xx/5xx status).
        status: The HTTP status for ``http`` failures.
    """

    def __init__(self, kind: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status


def _local_addresses() -> set[str]:
    import psutil

    found = {"127.0.0.1", "::1"}
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family in (socket.AF_INET, socket.AF_INET6):
                found.add(address.address.split("%")[0])
    return found


def is_local_host(host: str) -> bool:
    """Whether every address ``host`` resolves to is a loopback or an interface address of this machine."""
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    local = _local_addresses()
    addresses = {str(info[4][0]).split("%")[0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback or a in local for a in addresses)


def check_local_url(url: str, parameter: str = "--url") -> str:
    """Return ``url`` if it is an ``http(s)://`` URL whose host is this machine, else raise ConfigError."""
    parsed = urllib.parse.urlsplit(url)
    allowed = "an http:// URL on this machine (127.0.0.1, localhost or a local interface address)"
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(parameter, url, allowed)
    try:
        parsed.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise ConfigError(parameter, url, allowed, hint="the port is not a number in 0-65535") from None
    if not is_local_host(parsed.hostname):
        raise ConfigError(parameter, url, allowed, hint=f"{parsed.hostname} is not an address of this machine")
    return url


class HttpInference:
    """POST a batch of ``n`` rows to a scoring endpoint and wait for the answer.

    Args:
        url: The server (``http://127.0.0.1:5000``; ``/invocations`` is added when the path is empty) or the
            full endpoint URL.
        rows: Sample payloads (one JSON-ready row each); a batch of ``n`` cycles through them.
        timeout_s: Socket timeout of one request.
        body_format: ``inputs`` (tensors, lists), ``dataframe_split`` (needs ``columns``) or ``instances``.
        columns: Column names for ``dataframe_split``.
        check_local: Refuse a URL that is not on this machine.
    """

    def __init__(
        self,
        url: str,
        rows: Sequence[Any],
        *,
        timeout_s: float = 30.0,
        body_format: str = "inputs",
        columns: Sequence[str] | None = None,
        check_local: bool = True,
    ) -> None:
        if check_local:
            check_local_url(url)
        if body_format not in BODY_FORMATS:
            raise ConfigError("body_format", body_format, BODY_FORMATS)
        if not rows:
            raise ConfigError("rows", rows, "at least one sample payload")
        if body_format == "dataframe_split" and not columns:
            raise ConfigError("columns", columns, "column names for the dataframe_split format")
        parsed = urllib.parse.urlsplit(url)
        self.url = url
        self.https = parsed.scheme == "https"
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or (443 if self.https else 80)
        self.path = parsed.path if parsed.path not in ("", "/") else "/invocations"
        self.rows = list(rows)
        self.timeout_s = timeout_s
        self.body_format = body_format
        self.columns = list(columns or [])
        self._local = threading.local()

    def body(self, samples: int) -> bytes:
        """The JSON request body of a batch of ``samples`` rows."""
        batch = [self.rows[index % len(self.rows)] for index in range(samples)]
        if self.body_format == "dataframe_split":
            payload: dict[str, Any] = {"dataframe_split": {"columns": self.columns, "data": batch}}
        else:
            payload = {self.body_format: batch}
        return json.dumps(payload).encode("utf-8")

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            factory = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            connection = factory(self.host, self.port, timeout=self.timeout_s)
            connection.connect()
            # http.client sends the headers and the body in two writes; with Nagle's algorithm on, the body
            # then waits for the server's delayed ACK (40 ms on Linux) and every request looks 40 ms slow.
            connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._local.connection = connection
        return connection

    def _reset(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
        self._local.connection = None

    def __call__(self, samples: int) -> bytes:
        """Send one batch; return the response body.

        Raises:
            RequestError: On a timeout, a connection failure or an HTTP error status.
        """
        body = self.body(samples)
        headers = {"Content-Type": "application/json", "Connection": "keep-alive"}
        try:
            connection = self._connection()
            connection.request("POST", self.path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except TimeoutError as error:
            self._reset()
            raise RequestError("timeout", f"no answer from {mask_url(self.url)} within {self.timeout_s:g} s") from error
        except (OSError, http.client.HTTPException) as error:
            self._reset()
            raise RequestError("connection", f"{mask_url(self.url)}: {type(error).__name__}: {error}") from error
        if response.status >= 400:
            detail = data[:200].decode("utf-8", "replace")
            raise RequestError("http", f"HTTP {response.status} from {mask_url(self.url)}: {detail}", response.status)
        return data

    def close(self) -> None:
        """Close the calling thread's connection (other threads' close with them)."""
        self._reset()
