"""Where a study lives: in memory, a SQLite file, or a database server shared by many workers.

A database storage is an :class:`optuna.storages.RDBStorage` with a heartbeat: a running trial whose worker
stops beating for ``grace_period`` seconds (killed, machine lost) is failed by the next worker that looks, and
:class:`optuna.storages.RetryHeartbeatStaleTrialCallback` queues a copy of it, which a live worker runs.
(Optuna 5 renamed ``failed_trial_callback``/``RetryFailedTrialCallback`` to ``heartbeat_stale_trial_callback``/
``RetryHeartbeatStaleTrialCallback``; the old names are deprecated.) Several processes or machines work on one
study by giving the same ``--storage`` and ``--study-name``; an existing study is resumed by name.

Secrets: ``--storage auto`` reads the URL from ``$MLPERF_TRACK_STORAGE`` when it is set, and
``--storage-password-file`` puts a password from a file into the URL, so the password never reaches the
command line (``ps``, ``mlflow run``'s params); every URL shown is masked (:func:`mlperf_track.secrets.mask_url`).

Connections: each worker holds at most :data:`POOL_SIZE` + :data:`MAX_OVERFLOW` connections to a database server
(the main thread and the heartbeat thread use one each); ``$MLPERF_TRACK_STORAGE_POOL_SIZE`` and
``$MLPERF_TRACK_STORAGE_MAX_OVERFLOW`` change that (see docs/scale-out.md for the sums at many workers).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import optuna
from optuna.study import StudyDirection

from mlperf_track.errors import ConfigError, StorageError
from mlperf_track.secrets import (
    STORAGE_ENV,
    mask_text,
    mask_url,
    read_password_file,
    register_secret,
    url_password,
    with_password,
)
from mlperf_track.tuning.config import is_auto, is_none

if TYPE_CHECKING:
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial

logger = logging.getLogger(__name__)

#: SQLite file (in the working directory) of ``--storage auto``.
DEFAULT_DB_FILE: Final = "optuna.db"
#: Words of ``--storage`` that mean "keep the study in memory".
MEMORY_WORDS: Final = ("memory", ":memory:")
#: Study user attribute holding what the study searches and optimises (checked when a study is resumed).
STUDY_SIGNATURE_ATTR: Final = "mlperf_track.signature"
#: Seconds to wait for a database server before giving up.
CONNECT_TIMEOUT_S: Final = 10
#: Attempts to open a fresh database while other workers create its tables.
TABLE_RACE_ATTEMPTS: Final = 5
#: Connections a worker keeps open to a database server, and how many more it may open in a burst.
POOL_SIZE: Final = 2
MAX_OVERFLOW: Final = 2
#: Seconds a worker waits for a free pooled connection before the operation fails.
POOL_TIMEOUT_S: Final = 60

StaleListener = Callable[[optuna.Study, "FrozenTrial"], None]


def resolve_storage_url(text: str | None, directory: Path | None = None) -> str | None:
    """``None`` for an in-memory study; URLs pass through.

    ``auto`` means ``$MLPERF_TRACK_STORAGE`` when that is set (the way to keep a password off the command line),
    else ``sqlite:///<cwd>/optuna.db``.
    """
    if text is None or is_none(text) or text.strip().lower() in MEMORY_WORDS:
        return None
    if is_auto(text):
        from_env = os.environ.get(STORAGE_ENV, "").strip()
        if from_env:
            register_secret(url_password(from_env))
            return resolve_storage_url(from_env, directory) if not is_auto(from_env) else _default_sqlite(directory)
        return _default_sqlite(directory)
    register_secret(url_password(text))
    return with_installed_driver(text.strip())


def _default_sqlite(directory: Path | None) -> str:
    return f"sqlite:///{((directory or Path.cwd()).resolve() / DEFAULT_DB_FILE).as_posix()}"


def storage_from_flags(text: str | None, password_file: str | None = None) -> str | None:
    """The storage URL of ``--storage`` (``auto``: ``$MLPERF_TRACK_STORAGE`` or SQLite) and
    ``--storage-password-file``; ``None`` for memory.

    A password typed into ``--storage`` works but is visible in ``ps`` and, under ``mlflow run``, in the run's
    params: a warning says how to avoid that.

    Raises:
        ConfigError: The password file cannot be read, or the URL cannot take its password.
    """
    if text is not None and not is_auto(text) and url_password(text) is not None:
        logger.warning(
            "the password in --storage can be seen by other users (ps) and, under mlflow run, in the run's "
            "params: put the URL in $%s or the password in a file (--storage-password-file)",
            STORAGE_ENV,
        )
    url = resolve_storage_url(text)
    if password_file is None:
        return url
    if url is None or url.startswith("sqlite"):
        raise ConfigError(
            "--storage-password-file", password_file, "a password for a database server URL", hint="SQLite has none"
        )
    try:
        return with_password(url, read_password_file(password_file))
    except ValueError as error:
        raise ConfigError("--storage-password-file", password_file, hint=str(error)) from None


def with_installed_driver(url: str) -> str:
    """``postgresql://`` with the driver that is installed.

    SQLAlchemy 2.1 maps a bare ``postgresql://`` to psycopg 3; where only psycopg2 is installed (the
    ``psycopg2-binary`` wheel) that would fail with "No module named 'psycopg'", so the URL names psycopg2.
    """
    import importlib.util

    bare = "postgresql://"
    if url.startswith(bare) and importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2"):
        return "postgresql+psycopg2://" + url[len(bare) :]
    return url


def redact(url: str | None) -> str:
    """The URL without its password (for logs, params and error messages): :func:`mlperf_track.secrets.mask_url`."""
    return mask_url(url)


class StaleTrialHandler:
    """Queues a retry of a trial whose worker died, and tells listeners (the MLflow adapter logs it).

    Args:
        max_retry: How many times one trial may be retried.
    """

    def __init__(self, max_retry: int) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self.retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
        self.listeners: list[StaleListener] = []

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        logger.warning("trial %d stopped beating (its worker died); it is failed and queued again", trial.number)
        self.retry(study, trial)
        for listener in self.listeners:
            listener(study, trial)


def _pool_setting(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigError(name, text, "an integer >= 0")
    return value


def engine_kwargs(url: str) -> dict[str, Any]:
    """SQLAlchemy engine settings: a small pool per worker, so that many workers never exhaust the server."""
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}
    pool = {
        "pool_pre_ping": True,
        "pool_size": _pool_setting("MLPERF_TRACK_STORAGE_POOL_SIZE", POOL_SIZE),
        "max_overflow": _pool_setting("MLPERF_TRACK_STORAGE_MAX_OVERFLOW", MAX_OVERFLOW),
        "pool_timeout": POOL_TIMEOUT_S,
    }
    if url.startswith(("postgresql", "mysql")):
        return {**pool, "connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    return pool


def open_storage(
    url: str | None, *, heartbeat_interval_s: int, grace_period_s: int, stale_handler: StaleTrialHandler | None = None
) -> BaseStorage:
    """Open (and create the tables of) a storage.

    Args:
        url: A SQLAlchemy URL, or ``None`` for memory.
        heartbeat_interval_s: Heartbeat of running trials (database storages).
        grace_period_s: Age of the last heartbeat after which a running trial is failed.
        stale_handler: What to do with such a trial (default: retry up to 3 times).

    Raises:
        StorageError: The database cannot be reached or used (one line, password hidden).
    """
    if url is None:
        return optuna.storages.InMemoryStorage()
    handler = stale_handler or StaleTrialHandler(max_retry=3)
    for attempt in range(1, TABLE_RACE_ATTEMPTS + 1):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs(url),
                    heartbeat_interval=heartbeat_interval_s,
                    grace_period=grace_period_s,
                    heartbeat_stale_trial_callback=handler,
                )
        except (ImportError, ValueError, RuntimeError, OSError) as error:
            raise _storage_error(url, error) from None
        except Exception as error:
            if not type(error).__module__.startswith("sqlalchemy"):
                raise
            # Workers started together on a fresh database all create Optuna's tables; the losers see a
            # unique-key or "already exists" error. Once the winner has committed, opening again succeeds.
            if type(error).__name__ not in ("IntegrityError", "ProgrammingError") or attempt == TABLE_RACE_ATTEMPTS:
                raise _storage_error(url, error) from None
            logger.info("another worker is creating the study tables; retrying (%s)", type(error).__name__)
            time.sleep(0.5 * attempt)
    raise AssertionError("unreachable")


def _storage_error(url: str, error: BaseException) -> StorageError:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    detail = lines[0] if lines else type(error).__name__
    detail = mask_text(detail.replace(url, redact(url)))
    if "(Background on this error" in detail:
        detail = detail.split("(Background on this error")[0].strip()
    return StorageError(
        f"cannot open the Optuna storage {redact(url)}: {detail} "
        "(check the URL, that the database server runs and accepts this user, and that its driver is installed)"
    )


def open_study(
    storage: BaseStorage,
    *,
    study_name: str,
    directions: Sequence[str],
    sampler: optuna.samplers.BaseSampler,
    signature: dict[str, Any],
) -> tuple[optuna.Study, bool]:
    """Create the study, or load it when a study of that name exists and searches the same thing.

    Args:
        storage: The storage.
        study_name: The study's name.
        directions: ``maximize``/``minimize`` per objective.
        sampler: The sampler of this process.
        signature: What the study searches and optimises (space, objectives, limits); stored with a new study.

    Returns:
        The study, and whether this call created it (when several workers start at once, exactly one did).

    Raises:
        ConfigError: An existing study of that name optimises other objectives or another space.
        StorageError: The storage failed.
    """
    wanted = [StudyDirection.MAXIMIZE if d == "maximize" else StudyDirection.MINIMIZE for d in directions]
    try:
        try:
            study = optuna.create_study(storage=storage, study_name=study_name, directions=wanted, sampler=sampler)
            created = True
        except optuna.exceptions.DuplicatedStudyError:
            study = optuna.load_study(study_name=study_name, storage=storage, sampler=sampler)
            created = False
        stored = study.user_attrs.get(STUDY_SIGNATURE_ATTR)
        if stored is None:
            study.set_user_attr(STUDY_SIGNATURE_ATTR, signature)
    except Exception as error:
        if type(error).__module__.startswith("sqlalchemy"):
            detail = mask_text(str(error).splitlines()[0] if str(error) else type(error).__name__)
            raise StorageError(f"the Optuna storage failed while opening study {study_name!r}: {detail}") from None
        raise
    found = [direction.name.lower() for direction in study.directions]
    if found != [direction.lower() for direction in directions]:
        raise ConfigError(
            "--study-name", study_name, hint=f"that study optimises {found}, not {list(directions)}: use a new name"
        )
    if stored is not None and stored != signature:
        changed = sorted(key for key in set(stored) | set(signature) if stored.get(key) != signature.get(key))
        raise ConfigError(
            "--study-name",
            study_name,
            hint=f"that study was created with other settings ({', '.join(changed)} differ): use a new name",
        )
    if not created:
        logger.info("joining study %s with %d trials", study_name, len(study.trials))
    return study, created
