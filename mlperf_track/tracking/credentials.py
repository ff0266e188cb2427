"""Tracking servers with authentication (``mlflow server --app-name basic-auth``): credentials checked up front.

MLflow's client sends ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` (or ``MLFLOW_TRACKING_TOKEN``)
with every request by itself; nothing here handles them. What is added is the answer to wrong or missing
credentials: one authenticated request before any work (:func:`check_credentials`), and one line instead of a
traceback when the server refuses a request later (:func:`auth_error_message`, used by the command line).
"""

from __future__ import annotations

import os
from typing import Final

from mlperf_track.errors import StorageError
from mlperf_track.secrets import mask_url

#: MLflow error codes of a refused request (HTTP 401 and 403).
_REFUSED: Final = {"UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403}


def auth_error_message(error: BaseException, uri: str | None = None) -> str | None:
    """One line for an MLflow error that means "not authenticated" or "not allowed", else ``None``."""
    code = getattr(error, "error_code", None)
    if type(error).__name__ != "MlflowException" or code not in _REFUSED:
        return None
    server = mask_url(uri or os.environ.get("MLFLOW_TRACKING_URI") or "the tracking server")
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if code == "UNAUTHENTICATED":
        given = f"as user {user!r}" if user else "without credentials"
        return (
            f"the MLflow tracking server {server} refused the request {given} (HTTP 401): set "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) to valid credentials"
        )
    return (
        f"the MLflow tracking server {server} does not allow user {user!r} this request (HTTP 403): ask its admin "
        "for the permission, or use an experiment this user may write (--experiment-name)"
    )


def check_credentials(uri: str) -> None:
    """Fail fast when an HTTP tracking server refuses this process's credentials.

    Raises:
        StorageError: One line (exit 2) naming the server (password masked) and the variables to set.
    """
    if not uri.startswith(("http://", "https://")):
        return
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        MlflowClient(uri).search_experiments(max_results=1)
    except MlflowException as error:
        message = auth_error_message(error, uri)
        if message is not None:
            raise StorageError(message) from None
        raise
