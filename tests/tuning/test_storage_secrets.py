"""A study on a real password-protected PostgreSQL role (scram-sha-256): the password works from the environment,
a password file, PGPASSFILE or the URL, and never lands in an MLflow param, tag, metric key or artifact, in the log
file or on the console; a wrong password is one line, exit 2.

The measurement is the fake backend (``tuning_fakes``); the storage, the tuner and MLflow are real.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import mlflow
import optuna
import pytest
from postgres_server import PostgresServer, missing_reason, postgres_server

from mlperf_track.cli import main
from mlperf_track.secrets import STORAGE_ENV

SECRET = "pw-Tq9#z@x/%y:secret"  # characters that need percent-encoding in a URL
ROLE = "tuner"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(missing_reason() is not None, reason=str(missing_reason())),
]


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with postgres_server(("optuna",), password_role=(ROLE, SECRET)) as running:
        yield running


def _tune(experiment: str, study: str, *extra: str) -> int:
    return main([
        "tune", "--model", "fakenet", "--device", "cpu", "--n-trials", "3", "--batch-sizes", "max:8",
        "--memory-limit-mb", "1000", "--backend", "tuning_fakes:make_fake_backend", "--study-name", study,
        "--experiment-name", experiment, "--heartbeat-interval", "1", "--grace-period", "3", *extra,
    ])  # fmt: skip


def _everything_logged(experiment: str, workdir: Path) -> str:
    """Params, tags, metric keys and artifact contents of every run of ``experiment``, and every local log file."""
    client = mlflow.MlflowClient()
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    runs = client.search_runs([found.experiment_id], max_results=500)
    assert runs, "the tune logged nothing"
    texts: list[str] = []
    for run in runs:
        texts += [f"{k}={v}" for k, v in {**run.data.params, **run.data.tags}.items()]
        texts += list(run.data.metrics)
        target = workdir / "downloaded" / run.info.run_id
        target.mkdir(parents=True)
        mlflow.artifacts.download_artifacts(run_id=run.info.run_id, dst_path=str(target))
        texts += [path.read_bytes().decode("utf-8", "replace") for path in target.rglob("*") if path.is_file()]
    texts += [path.read_text(errors="replace") for path in workdir.rglob("*.log")]
    return "\n".join(texts)


def _assert_secret_absent(text: str) -> None:
    for form in (SECRET, urllib.parse.quote(SECRET, safe=""), urllib.parse.quote(SECRET)):
        assert form not in text


@pytest.mark.parametrize("way", ["environment", "password_file", "url_flag"])
def test_the_password_reaches_the_database_and_nothing_logged(  # noqa: PLR0917 (pytest fixtures)
    server: PostgresServer,
    tracking: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    way: str,
) -> None:
    study = f"secret-{way}"
    if way == "environment":
        monkeypatch.setenv(STORAGE_ENV, server.url("optuna"))
        extra: tuple[str, ...] = ()
    elif way == "password_file":
        secret_file = tmp_path / "pw"
        secret_file.write_text(SECRET + "\n")
        secret_file.chmod(0o600)
        extra = ("--storage", server.url("optuna", password=""), "--storage-password-file", str(secret_file))
    else:  # the worst case: typed into the flag (works, warned about, still never logged)
        extra = ("--storage", server.url("optuna"))

    code = _tune(tracking, study, *extra)

    out, err = capsys.readouterr()
    assert code == 0, err
    stored = optuna.load_study(study_name=study, storage=server.url("optuna"))
    assert len(stored.trials) >= 3  # the password worked: the study lives in the protected database
    _assert_secret_absent(out + err)
    logged = _everything_logged(tracking, tmp_path)
    _assert_secret_absent(logged)
    assert f"study.storage=postgresql+psycopg2://{ROLE}:***@127.0.0.1:{server.port}/optuna" in logged
    if way == "url_flag":
        assert "can be seen by other users (ps)" in err


def test_pgpassfile_works_without_a_password_in_the_url(
    server: PostgresServer, tracking: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"127.0.0.1:{server.port}:optuna:{ROLE}:{SECRET.replace(':', chr(92) + ':')}\n")
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))

    assert _tune(tracking, "secret-pgpass", "--storage", server.url("optuna", password="")) == 0


def test_wrong_password_is_one_line_exit_2(
    server: PostgresServer, tracking: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "not-the-password-42"
    monkeypatch.setenv(STORAGE_ENV, server.url("optuna", password=wrong))

    code = _tune(tracking, "secret-wrong")

    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("mlperf-track tune: error:")]
    assert code == 2
    assert len(errors) == 1 and "password authentication failed" in errors[0], err
    assert "Traceback" not in err and wrong not in err and f"{ROLE}:***@" in errors[0]


def test_password_file_for_sqlite_is_refused(tracking: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_text("whatever\n")

    code = _tune(tracking, "secret-sqlite", "--storage-password-file", str(secret_file))

    assert code == 2
    assert "invalid --storage-password-file" in capsys.readouterr().err
