"""The masking helper: URLs, free text, registered secrets, log records, password files."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mlperf_track import secrets
from mlperf_track.secrets import MaskingFormatter, mask_text, mask_url, read_password_file, url_password, with_password


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://u:pw@db.example:5432/optuna", "postgresql://u:***@db.example:5432/optuna"),
        ("postgresql+psycopg2://u:p%40ss@h/db", "postgresql+psycopg2://u:***@h/db"),
        ("mysql://user:a:b@c@host/db", "mysql://user:***@host/db"),  # an unencoded ":" and "@" in the password
        ("https://alice:tok@mlflow.example/", "https://alice:***@mlflow.example/"),
        ("postgresql://u@h/db?sslmode=require&password=pw", "postgresql://u@h/db?sslmode=require&password=***"),
        ("http://127.0.0.1:5000?token=abc", "http://127.0.0.1:5000?token=***"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("sqlite:////tmp/optuna.db", "sqlite:////tmp/optuna.db"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_mask_url_of_none_is_memory() -> None:
    assert mask_url(None) == "memory"


def test_mask_text_masks_every_url_in_a_message() -> None:
    text = "cannot open postgresql://u:hunter22@h/db, and 'http://a:b-secret@x:1/p' failed; ?pwd=zzz9 too"
    masked = mask_text(text)
    assert "hunter22" not in masked and "b-secret" not in masked and "zzz9" not in masked
    assert "postgresql://u:***@h/db" in masked and "http://a:***@x:1/p" in masked


def test_registered_secrets_are_masked_anywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(secrets, "_secrets", set())
    secrets.register_secret("s3cr3t/value")
    secrets.register_secret("ab")  # too short to mask in free text
    assert mask_text("the token s3cr3t/value and s3cr3t%2Fvalue") == "the token *** and ***"
    assert mask_text("ab") == "ab"


def test_env_secrets_are_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(secrets, "_secrets", set())
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "tracking-pw-1")
    monkeypatch.setenv(secrets.STORAGE_ENV, "postgresql://u:storage-pw-2@h/db")
    secrets.register_env_secrets()
    assert mask_text("tracking-pw-1 storage-pw-2") == "*** ***"


def test_masking_formatter_masks_messages_arguments_and_tracebacks() -> None:
    formatter = MaskingFormatter("%(message)s")
    try:
        raise RuntimeError("connect to postgresql://u:tb-secret@h/db failed")
    except RuntimeError:
        import sys

        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "url %s", ("http://a:arg-secret@h",), sys.exc_info()
        )
    output = formatter.format(record)
    assert "arg-secret" not in output and "tb-secret" not in output and "Traceback" in output


def test_password_file_first_line_and_registration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(secrets, "_secrets", set())
    path = tmp_path / "pw"
    path.write_text("first-line-pw\nignored\n")
    path.chmod(0o644)
    with caplog.at_level("WARNING"):
        assert read_password_file(path) == "first-line-pw"
    assert "chmod 600" in caplog.text
    assert mask_text("x first-line-pw y") == "x *** y"


@pytest.mark.parametrize("content", ["", "\nsecond"])
def test_empty_password_file_is_refused(tmp_path: Path, content: str) -> None:
    path = tmp_path / "pw"
    path.write_text(content)
    with pytest.raises(ValueError, match=r"--storage-password-file.*first line is the password"):
        read_password_file(path)


def test_with_password_encodes_and_refuses_two_passwords() -> None:
    url = with_password("postgresql://u@h:5432/db?sslmode=require", "p@ss/w:rd")
    assert url == "postgresql://u:p%40ss%2Fw%3Ard@h:5432/db?sslmode=require"
    assert url_password(url) == "p@ss/w:rd"
    with pytest.raises(ValueError, match="already holds a password"):
        with_password("postgresql://u:x@h/db", "y")
    with pytest.raises(ValueError, match="names no user"):
        with_password("postgresql://h/db", "y")
