"""Where runs go: the tracking URI and the experiment.

MLflow 3 refuses the old ``./mlruns`` file store, so the default here is the SQLite file ``mlflow.db`` in the
working directory. ``MLFLOW_TRACKING_URI`` (set by the user, or by ``mlflow run`` for its subprocess) wins.
SQLite is fine for one writer; several processes writing at once (parallel tuning workers) want a tracking
server or PostgreSQL.
"""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

from mlperf_track.errors import StorageError

logger = logging.getLogger(__name__)

#: Name of the SQLite file used when no tracking URI is configured.
DEFAULT_DB_FILE = "mlflow.db"
#: Seconds to wait for an HTTP tracking server to answer before giving up.
REACHABILITY_TIMEOUT_S = 5.0


def default_tracking_uri(directory: Path | None = None) -> str:
    """``sqlite:///<directory>/mlflow.db`` (the working directory by default), as an absolute path."""
    folder = (directory or Path.cwd()).resolve()
    return f"sqlite:///{(folder / DEFAULT_DB_FILE).as_posix()}"


def resolve_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` when set, else :func:`default_tracking_uri`."""
    return os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def check_reachable(uri: str, timeout_s: float = REACHABILITY_TIMEOUT_S) -> None:
    """Fail fast when an HTTP tracking server does not answer.

    MLflow retries unreachable servers with exponential backoff for minutes; one short request tells the user
    at once. Any HTTP answer (even 401 or 404) counts as reachable; only connection failures raise.

    Raises:
        StorageError: The server refused the connection or did not answer in time.
    """
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s):
            return
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise StorageError(
            f"the MLflow tracking server {uri} cannot be reached ({reason}): start it "
            f"(mlflow server --backend-store-uri sqlite:///mlflow.db) or fix MLFLOW_TRACKING_URI"
        ) from None


def configure_tracking(experiment: str | None = None) -> str:
    """Point MLflow at the tracking store and, optionally, an experiment.

    Inside ``mlflow run`` (``MLFLOW_RUN_ID`` is set) the run already belongs to an experiment, so
    ``experiment`` is ignored with a warning when it differs; use ``mlflow run --experiment-name`` there.

    Args:
        experiment: Experiment name to create or use, or ``None`` for MLflow's choice
            (``MLFLOW_EXPERIMENT_NAME``/``MLFLOW_EXPERIMENT_ID`` or ``Default``).

    Returns:
        The tracking URI in use.

    Raises:
        StorageError: The tracking store cannot be reached or used.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = resolve_tracking_uri()
    check_reachable(uri)
    # Appending a row to a logged table downloads it first; MLflow's progress bar for that is noise here.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(uri)
    if experiment and os.environ.get("MLFLOW_RUN_ID"):
        logger.warning("inside mlflow run the experiment is chosen by mlflow run; ignoring %r", experiment)
    elif experiment:
        try:
            mlflow.set_experiment(experiment)
        except MlflowException as error:
            raise StorageError(f"cannot use experiment {experiment!r} at {uri}: {error.message}") from None
    logger.info("tracking to %s", uri)
    return uri
