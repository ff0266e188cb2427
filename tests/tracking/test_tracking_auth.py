"""A real ``mlflow server --app-name basic-auth`` on 127.0.0.1: the pipeline and the tuner log with
MLFLOW_TRACKING_USERNAME/PASSWORD; wrong or missing credentials are one line, exit 2, and the password never
reaches the console."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlperf_track.cli import main

ADMIN, PASSWORD = "admin", "Adm1n-pass-for-tests"
TUNING_TESTS = Path(__file__).resolve().parents[1] / "tuning"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        importlib.util.find_spec("flask_wtf") is None, reason="the basic-auth app needs mlflow[auth] (Flask-WTF)"
    ),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("basic_auth")
    config = root / "auth.ini"
    config.write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{root / 'auth.db'}\nadmin_username = {ADMIN}\nadmin_password = {PASSWORD}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    port = _free_port()
    env = {**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-only-key"}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = (root / "server.log").open("w")
    command = [
        sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth", "--host", "127.0.0.1",
        "--port", str(port), "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"),
    ]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, (root / "server.log").read_text()[-3000:]
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/health", timeout=2):
                break
            assert time.monotonic() < deadline, "the basic-auth server did not start in 120 s"
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=20)
        if process.poll() is None:
            process.kill()


@pytest.fixture
def as_user(auth_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from mlflow.tracking import fluent

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", auth_server)
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(fluent, "_active_experiment_id", None)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    yield
    import mlflow

    while mlflow.active_run() is not None:
        mlflow.end_run()


RUN = ["run", "--model", "tinycnn", "--device", "cpu", "--image-size", "32", "--batch-sizes", "1",
       "--runtimes", "eager", "--precisions", "fp32", "--variants", "none", "--dataset", "synthetic",
       "--max-time", "0.2"]  # fmt: skip
TUNE = ["tune", "--model", "fakenet", "--device", "cpu", "--n-trials", "2", "--batch-sizes", "max:4",
        "--backend", "tuning_fakes:make_fake_backend", "--storage", "none"]  # fmt: skip


@pytest.mark.usefixtures("as_user")
def test_pipeline_and_tuner_log_with_basic_auth_credentials(
    auth_server: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    monkeypatch.syspath_prepend(str(TUNING_TESTS))

    assert main([*RUN, "--experiment-name", "auth-run"]) == 0
    assert main([*TUNE, "--experiment-name", "auth-tune"]) == 0

    out, err = capsys.readouterr()
    assert PASSWORD not in out + err
    client = mlflow.MlflowClient(auth_server)
    for name, at_least in (("auth-run", 2), ("auth-tune", 3)):  # parent + case; parent + 2 trials
        experiment = client.get_experiment_by_name(name)
        assert experiment is not None
        runs = client.search_runs([experiment.experiment_id])
        assert len(runs) >= at_least and {run.info.status for run in runs} == {"FINISHED"}


@pytest.mark.usefixtures("as_user")
@pytest.mark.parametrize("credentials", [("admin", "wrong-password-9"), None])
@pytest.mark.parametrize("command", ["run", "tune", "report"])
def test_wrong_or_missing_credentials_are_one_line_exit_2(
    command: str,
    credentials: tuple[str, str] | None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if credentials is None:
        monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
        monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    else:
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", credentials[0])
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", credentials[1])
    monkeypatch.syspath_prepend(str(TUNING_TESTS))
    argv = {"run": RUN, "tune": TUNE, "report": ["report", "--experiment", "mlperf_track"]}[command]

    code = main(list(argv))

    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith(f"mlperf-track {command}: error:")]
    assert code == 2, err
    assert len(errors) == 1 and "HTTP 401" in errors[0] and "MLFLOW_TRACKING_USERNAME" in errors[0], err
    assert "Traceback" not in err and "wrong-password-9" not in err
