"""A new SQLite tracking store is created and migrated by one process, under a file lock, before anyone uses it.

MLflow creates a SQLite store's tables on first use by running its Alembic migrations, with no lock. Several
processes started at once on a new ``mlflow.db`` (parallel ``mlperf-track run`` or tuning workers) race through
the same migrations: reproduced with 6 processes, 5 of 6 died with ``table _alembic_tmp_runs already exists``,
``duplicate column name: step`` or Alembic's ``Online migration expected to match one row``, some leaving a
half-migrated file.

:func:`prepare_sqlite_store` takes an exclusive ``fcntl.flock`` on ``<database>.lock`` (a small file next to the
database that stays there; deleting a lock file others may hold is itself a race), opens the store through
MLflow inside it (which creates and migrates it when new, and only checks it otherwise), and lets go. The next
process waits for the lock, then finds the tables at the current revision. The lock is held only for that
first open; SQLite's own locking takes over for every write after it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

LOCK_SUFFIX = ".lock"
#: How long to wait for another process's migration before failing with a clear message.
LOCK_TIMEOUT_S = 300.0


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (``None`` for other stores and in-memory SQLite)."""
    if not uri.startswith("sqlite:///"):
        return None
    location = uri[len("sqlite:///") :].split("?", 1)[0]
    if not location or location == ":memory:":
        return None
    return Path(location)


@contextlib.contextmanager
def file_lock(path: Path, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created when missing) for the block.

    Raises:
        TimeoutError: Another process held it for longer than ``timeout_s``.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{path} stayed locked by another process for {timeout_s:.0f} s") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def prepare_sqlite_store(uri: str) -> bool:
    """Create and migrate the SQLite store of ``uri`` once, under a file lock; no-op for other stores.

    Returns:
        Whether ``uri`` is a SQLite file store (and is now ready).

    Raises:
        TimeoutError: Another process kept the lock for :data:`LOCK_TIMEOUT_S` seconds.
        MlflowException: MLflow refused the store (an out-of-date schema: ``mlflow db upgrade``).
    """
    path = sqlite_file(uri)
    if path is None:
        return False
    from mlflow import MlflowClient

    with file_lock(path.with_name(path.name + LOCK_SUFFIX)):
        new = not path.exists() or path.stat().st_size == 0
        # Any call opens the store: MLflow creates and migrates the tables of a new file here.
        MlflowClient(uri).search_experiments(max_results=1)
    if new:
        logger.info("created the tracking store %s", path)
    return True
