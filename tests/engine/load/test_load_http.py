"""The HTTP client under load, against a small real server on 127.0.0.1 (stdlib), and the local-address rule."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from mlperf_track import metrics as m
from mlperf_track.engine.load.config import DeploymentConfig, LoadConfig
from mlperf_track.engine.load.http import HttpInference, RequestError, check_local_url
from mlperf_track.engine.load.run import run_load
from mlperf_track.errors import ConfigError


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client expects
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        rows = body.get("inputs") or body.get("dataframe_split", {}).get("data", [])
        mode = self.server.mode  # type: ignore[attr-defined]
        if mode == "slow":
            time.sleep(0.5)
        status = 500 if mode == "error" else 200
        payload = json.dumps({"predictions": [sum(row) for row in rows]}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[http.server.ThreadingHTTPServer]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.mode = "ok"  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _url(httpd: http.server.ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{httpd.server_address[1]}"


def test_a_batch_is_one_request_with_n_rows(server: http.server.ThreadingHTTPServer) -> None:
    client = HttpInference(_url(server), [[1, 2], [3, 4]])
    assert json.loads(client(3)) == {"predictions": [3, 7, 3]}  # rows cycle to fill the batch
    assert client.path == "/invocations"
    split = HttpInference(_url(server) + "/score", [[1, 2]], body_format="dataframe_split", columns=["a", "b"])
    assert json.loads(split(2)) == {"predictions": [3, 3]}
    assert split.path == "/score"


def test_load_over_http_counts_no_error_when_all_succeed(server: http.server.ThreadingHTTPServer) -> None:
    config = LoadConfig("concurrency", concurrency=2, min_duration_s=0.2, min_query_count=20, early_stopping=False)
    result = run_load(HttpInference(_url(server), [[1.0, 2.0]]), config, DeploymentConfig(workers=2))
    assert result.metrics[m.LOAD_ERRORS] == 0 and result.metrics[m.LOAD_COMPLETED] >= 20
    assert result.metrics[m.LOAD_COMPUTE_P50] > 0


def test_http_errors_are_counted_per_kind(server: http.server.ThreadingHTTPServer) -> None:
    client = HttpInference(_url(server), [[1.0]])
    server.mode = "error"  # type: ignore[attr-defined]
    with pytest.raises(RequestError) as error:
        client(1)
    assert error.value.kind == "http" and error.value.status == 500
    config = LoadConfig("single_stream", min_duration_s=0.0, min_query_count=5, early_stopping=False)
    result = run_load(client, config, warmup_calls=0)
    assert result.metrics[m.LOAD_HTTP_ERRORS] == 5 and result.metrics[m.LOAD_ERRORS] == 5
    assert result.metrics[m.LOAD_TIMEOUTS] == 0 and not result.valid


def test_timeouts_are_counted(server: http.server.ThreadingHTTPServer) -> None:
    server.mode = "slow"  # type: ignore[attr-defined]
    client = HttpInference(_url(server), [[1.0]], timeout_s=0.1)
    config = LoadConfig("single_stream", min_duration_s=0.0, min_query_count=3, early_stopping=False)
    result = run_load(client, config, warmup_calls=0)
    assert result.metrics[m.LOAD_TIMEOUTS] == 3


def test_connection_errors_are_counted() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed: nothing listens here
    client = HttpInference(f"http://127.0.0.1:{port}", [[1.0]], timeout_s=1.0)
    config = LoadConfig("single_stream", min_duration_s=0.0, min_query_count=4, early_stopping=False)
    result = run_load(client, config, warmup_calls=0)
    assert result.metrics[m.LOAD_CONNECTION_ERRORS] == 4
    assert "refused" in result.tags["load.first_error.connection"].lower()


@pytest.mark.parametrize("url", ["http://127.0.0.1:5000", "http://localhost:8080/invocations"])
def test_local_urls_are_accepted(url: str) -> None:
    assert check_local_url(url) == url


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("http://8.8.8.8:5000", "not an address of this machine"),
        ("http://192.0.2.1", "not an address of this machine"),
        ("ftp://127.0.0.1/x", None),
        ("127.0.0.1:5000", None),
        ("http://127.0.0.1:99999", "port"),
        ("http://no-such-host.invalid:5000", "not an address"),
    ],
)
def test_urls_off_this_machine_are_refused(url: str, hint: str | None) -> None:
    with pytest.raises(ConfigError) as error:
        check_local_url(url)
    assert error.value.parameter == "--url"
    if hint:
        assert hint in str(error.value)


def test_bad_client_settings() -> None:
    with pytest.raises(ConfigError, match="body_format"):
        HttpInference("http://127.0.0.1:1", [[1]], body_format="xml")
    with pytest.raises(ConfigError, match="rows"):
        HttpInference("http://127.0.0.1:1", [])
    with pytest.raises(ConfigError, match="columns"):
        HttpInference("http://127.0.0.1:1", [[1]], body_format="dataframe_split")
