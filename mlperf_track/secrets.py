"""Passwords stay out of params, tags, artifacts, logs and the console: one masking helper for every URL we show.

:func:`mask_url` hides the password of a database or tracking URL (``postgresql://user:***@host/db``) and the
values of secret-looking query parameters (``?password=``, ``?token=``); :func:`mask_text` does the same for
every URL inside a message and also hides any secret registered with :func:`register_secret` (a password read
from a file, ``MLFLOW_TRACKING_PASSWORD``). :class:`MaskingFormatter` applies :func:`mask_text` to every log
record the command line writes (console and log file, third-party records and tracebacks included), so a URL
that some library logs is masked too.

How users keep a password off the command line (where ``ps`` and ``mlflow run``'s params would show it):
the whole storage URL in the environment variable :data:`STORAGE_ENV` (read when ``--storage`` is ``auto``),
or the password alone in a file (``--storage-password-file``; PostgreSQL's own ``PGPASSFILE``/``~/.pgpass``
and ``?passfile=`` work as well, since libpq reads them itself).

This module imports nothing of the package (every layer may use it) and nothing outside the standard library.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import threading
import urllib.parse
from pathlib import Path
from typing import Final

#: Environment variable holding the Optuna storage URL (password included) when ``--storage`` is ``auto``.
STORAGE_ENV: Final = "MLPERF_TRACK_STORAGE"
#: What a hidden secret is replaced with.
MASK: Final = "***"
#: Environment variables whose values are secrets (masked wherever they appear).
SECRET_ENV_VARS: Final = ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "PGPASSWORD")
#: Registered secrets shorter than this are not masked in free text (masking "ab" would garble every message).
MIN_SECRET_LENGTH: Final = 4

_SECRET_QUERY_KEY = re.compile(r"pass(word|wd)?|pwd|secret|token|api[_-]?key|access[_-]?key|sig(nature)?|credential")
# user:password@ after a scheme, inside free text; the password runs to the last "@" before whitespace or a quote.
_CREDENTIALS_IN_TEXT = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s'\"]*):(?P<password>[^\s'\"]*)@")
_QUERY_SECRET_IN_TEXT = re.compile(
    r"(?P<head>[?&](?:" + _SECRET_QUERY_KEY.pattern + r")=)(?P<value>[^&\s'\"#]+)", re.IGNORECASE
)
_secrets: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Mask ``value`` wherever :func:`mask_text` sees it from now on (a password read from a file, a token)."""
    if value and len(value) >= MIN_SECRET_LENGTH:
        with _lock:
            _secrets.update({value, urllib.parse.quote(value, safe="")})


def register_env_secrets() -> None:
    """Register the values of :data:`SECRET_ENV_VARS` and the password of :data:`STORAGE_ENV`'s URL."""
    for name in SECRET_ENV_VARS:
        register_secret(os.environ.get(name))
    register_secret(url_password(os.environ.get(STORAGE_ENV)))


def url_password(url: str | None) -> str | None:
    """The (decoded) password of ``url``, or ``None``."""
    if not url or "://" not in url:
        return None
    netloc = urllib.parse.urlsplit(url).netloc
    userinfo, at, _ = netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return None
    return urllib.parse.unquote(userinfo.split(":", 1)[1]) or None


def has_password(url: str | None) -> bool:
    """Whether ``url`` carries a password in its user part or in a secret query parameter."""
    return url_password(url) is not None or (url is not None and mask_url(url) != url)


def mask_url(url: str | None) -> str:
    """``url`` with its password and secret query values replaced by ``***`` (``None`` gives ``memory``).

    Works on SQLAlchemy URLs (``postgresql+psycopg2://u:p@h:5432/db``) and HTTP URLs alike; anything else is
    masked as text.
    """
    if url is None:
        return "memory"
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return mask_text(url)
    netloc = parts.netloc
    userinfo, at, host = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:{MASK}@{host}"
    query = parts.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_QUERY_KEY.fullmatch(key.lower()) for key, _ in pairs):
            query = "&".join(
                f"{key}={MASK if _SECRET_QUERY_KEY.fullmatch(key.lower()) else urllib.parse.quote(value, safe='/:')}"
                for key, value in pairs
            )
    masked = url  # replaced in place: urlunsplit would also rewrite harmless parts (sqlite:////abs -> sqlite://abs)
    if netloc != parts.netloc:
        masked = masked.replace(f"//{parts.netloc}", f"//{netloc}", 1)
    if query != parts.query:
        masked = masked.replace(f"?{parts.query}", f"?{query}", 1)
    return _mask_registered(masked)


def mask_text(text: str) -> str:
    """``text`` with the credentials of every URL in it, and every registered secret, replaced by ``***``."""
    if not text:
        return text
    masked = _CREDENTIALS_IN_TEXT.sub(lambda match: f"{match.group('head')}:{MASK}@", text)
    masked = _QUERY_SECRET_IN_TEXT.sub(lambda match: f"{match.group('head')}{MASK}", masked)
    return _mask_registered(masked)


def _mask_registered(text: str) -> str:
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class MaskingFormatter(logging.Formatter):
    """A formatter whose output (message, arguments and traceback) goes through :func:`mask_text`."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_text(super().format(record))


def read_password_file(path: Path | str, parameter: str = "--storage-password-file") -> str:
    """The password in ``path``: its first line without the line ending (registered as a secret).

    A file that others can read is used, with a warning: libpq ignores such a ``.pgpass`` file, but refusing
    here would only push the password back onto the command line.

    Raises:
        ValueError: The file is missing, unreadable or empty (the message names ``parameter``).
    """
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
        mode = file.stat().st_mode
    except OSError as error:
        raise ValueError(f"invalid {parameter}={str(path)!r}: cannot read it ({error.strerror})") from None
    lines = text.splitlines()
    password = lines[0] if lines else ""
    if not password:
        raise ValueError(f"invalid {parameter}={str(path)!r}: allowed is a file whose first line is the password")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logging.getLogger(__name__).warning(
            "%s can be read by other users (mode %o): chmod 600 %s", file, stat.S_IMODE(mode), file
        )
    register_secret(password)
    return password


def with_password(url: str, password: str) -> str:
    """``url`` with ``password`` (percent-encoded) in its user part.

    Raises:
        ValueError: ``url`` has no user name, or already has a password.
    """
    parts = urllib.parse.urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at or not userinfo:
        raise ValueError("the URL names no user (postgresql://USER@host/db) to give the password to")
    if ":" in userinfo:
        raise ValueError("the URL already holds a password; give it in one place only")
    netloc = f"{userinfo}:{urllib.parse.quote(password, safe='')}@{host}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
