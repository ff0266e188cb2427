"""Where runs go: the tracking URI and the experiment.

MLflow 3 refuses the old ``./mlruns`` file store, so the default here is the SQLite file ``mlflow.db`` in the
working directory. ``MLFLOW_TRACKING_URI`` (set by the user, or by ``mlflow run`` for its subprocess) wins.
SQLite is fine for one writer; several processes writing at once (parallel tuning workers) want a tracking
server or PostgreSQL. :func:`check_tracking_store` refuses, before any work, a store that cannot be reached,
created or written; :func:`configure_tracking` creates a new SQLite store once, under a file lock
(:mod:`mlperf_track.tracking.sqlite_store`), so processes started together never race through its migrations,
and shortens MLflow's HTTP retries (:func:`configure_http_retries`) so that an unreachable server is noticed in
seconds, not minutes (the results then wait in the outbox, :mod:`mlperf_track.tracking.outbox`).

Experiments (:func:`experiment_for`): runs go to the experiment the user names (``--experiment-name``, or
``MLFLOW_EXPERIMENT_NAME``/``MLFLOW_EXPERIMENT_ID`` as MLflow users expect), else to one named after the question,
``mlperf_track/<model>``, so that runs of different models never share an experiment. ``report --experiment
mlperf_track`` and ``export`` find them all through
:func:`mlperf_track.report.runs.resolve_experiments` (a prefix matches ``prefix/*``).

Inside ``mlflow run`` the run exists before our code starts, in the experiment ``mlflow run`` chose: with
``--experiment-name X`` (or ``MLFLOW_EXPERIMENT_NAME``), X is used and nothing moves. Without one, ``mlflow run``
puts its run in ``Default``; MLflow cannot move runs, so the pipeline's parent run is created in
``mlperf_track/<model>`` (named like ``mlflow run``'s run, with its source tags) and ``mlflow run``'s run keeps a
pointer: tags ``mlperf_track.run_id`` and ``mlperf_track.experiment`` and a note saying where the results are.
That way ``mlflow run . -P model=resnet50`` and ``mlperf-track run --model resnet50`` answer into the same
experiment, and a project run nested in another (a workflow step) stays where its parent put it.
"""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from mlperf_track.errors import StorageError
from mlperf_track.secrets import mask_url
from mlperf_track.tracking.sqlite_store import prepare_sqlite_store, sqlite_file

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

logger = logging.getLogger(__name__)

#: Name of the SQLite file used when no tracking URI is configured.
DEFAULT_DB_FILE = "mlflow.db"
#: Seconds to wait for an HTTP tracking server to answer before giving up.
REACHABILITY_TIMEOUT_S = 5.0
#: First component of the experiments named after the question (``mlperf_track/resnet50``).
EXPERIMENT_PREFIX = "mlperf_track"
#: Tags on ``mlflow run``'s run in ``Default`` when the results went to another experiment, and back.
POINTER_RUN_TAG = "mlperf_track.run_id"
POINTER_EXPERIMENT_TAG = "mlperf_track.experiment"
LAUNCHER_TAG = "mlperf_track.launched_by"
#: Tags of ``mlflow run``'s run copied to the run that holds the results (where the code came from).
_PROVENANCE_PREFIXES = ("mlflow.source.", "mlflow.project.", "mlflow.gitRepoURL", "mlflow.user")
_SQLITE_HEADER = b"SQLite format 3\x00"
#: MLflow's HTTP retry settings for our process (MLflow's defaults retry for about four minutes: 7 retries with
#: backoff factor 2, 120 s timeout). An explicit environment variable wins.
HTTP_RETRY_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
#: ``mlflow run``'s own run (key ``run_id``), when its results went to another experiment (:func:`_take_over_launch`).
_LAUNCHER: dict[str, str] = {}


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
            f"the MLflow tracking server {mask_url(uri)} cannot be reached ({reason}): start it "
            f"(mlflow server --backend-store-uri sqlite:///mlflow.db) or fix MLFLOW_TRACKING_URI"
        ) from None


def configure_http_retries() -> None:
    """Bound MLflow's HTTP retries for this process (:data:`HTTP_RETRY_DEFAULTS`; set variables are kept).

    With these, a refused connection fails after about 3 retries and 7 s of backoff, a server that hangs after
    30 s per attempt; MLflow reads the variables at every request.
    """
    for name, value in HTTP_RETRY_DEFAULTS.items():
        os.environ.setdefault(name, value)


def launcher_run_id() -> str | None:
    """``mlflow run``'s own run when this process moved the results to another experiment, else ``None``."""
    return _LAUNCHER.get("run_id")


def check_tracking_store(uri: str) -> None:
    """Fail fast, saying what to do, when the tracking store cannot be reached, created or written.

    HTTP servers must answer (:func:`check_reachable`) and accept the credentials
    (:func:`~mlperf_track.tracking.credentials.check_credentials`); a SQLite file must be a SQLite database this
    user can write, or be creatable in an existing, writable folder. Other databases are left to MLflow.

    Raises:
        StorageError: One line naming the URI, what is wrong and how to fix it.
    """
    check_reachable(uri)
    from mlperf_track.tracking.credentials import check_credentials

    check_credentials(uri)
    path = sqlite_file(uri)
    if path is None:
        return
    fix = "set MLFLOW_TRACKING_URI to a sqlite:/// file in a writable folder (or unset it for ./mlflow.db)"

    def fail(problem: str) -> StorageError:
        return StorageError(f"the tracking store {mask_url(uri)} cannot be used: {problem}; {fix}")

    if path.is_dir():
        raise fail(f"{path} is a folder, not a database file")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise fail(f"the folder {folder} does not exist (create it with mkdir -p {folder})")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise fail(f"the folder {folder} is not writable (SQLite writes its journal next to the database)")
    if path.exists():
        if not os.access(path, os.R_OK | os.W_OK):
            raise fail(f"{path} is not readable and writable by this user")
        with open(path, "rb") as handle:
            header = handle.read(len(_SQLITE_HEADER))
        if header and header != _SQLITE_HEADER:
            raise fail(f"{path} is not a SQLite database")


def question_experiment(model: str) -> str:
    """The experiment named after the question: ``mlperf_track/<model>``.

    ``models:/name/3`` and ``models:/name@alias`` give the registered name, ``runs:/<id>/path`` gives
    ``run-<id[:8]>-<last path part>``, a file its stem, a name itself.
    """
    ref = model.strip()
    if ref.startswith("models:/"):
        name = ref[len("models:/") :].strip("/").split("/")[0].split("@")[0]
    elif ref.startswith("runs:/"):
        parts = [part for part in ref[len("runs:/") :].split("/") if part]
        name = (
            "-".join(["run", parts[0][:8], *parts[-1:]]) if len(parts) > 1 else f"run-{parts[0][:8]}" if parts else ""
        )
    elif "/" in ref or "\\" in ref or Path(ref).suffix:
        name = Path(ref.replace("\\", "/")).stem
    else:
        name = ref
    return f"{EXPERIMENT_PREFIX}/{name or 'model'}"


def _launcher(run_id: str, client: MlflowClient) -> tuple[Run, str] | None:
    """``mlflow run``'s run and the name of its experiment, or ``None`` when it cannot be read."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
        return run, client.get_experiment(run.info.experiment_id).name
    except MlflowException:
        logger.warning("the run MLFLOW_RUN_ID=%s cannot be read; runs stay where MLflow puts them", run_id)
        return None


def _is_unnamed_launch(run: Run, experiment_name: str) -> bool:
    """Whether ``run`` is a top-level ``mlflow run`` run put in ``Default`` because nobody named an experiment."""
    tags = run.data.tags
    return (
        experiment_name == "Default"
        and tags.get("mlflow.source.type") == "PROJECT"
        and "mlflow.parentRunId" not in tags
        and not os.environ.get("MLFLOW_EXPERIMENT_NAME")
    )


def experiment_for(explicit: str | None, model: str) -> str | None:
    """The experiment a run of ``model`` goes to (``None``: the one MLflow chose, see the module docstring).

    Args:
        explicit: ``--experiment-name`` when given.
        model: The model reference, for ``mlperf_track/<model>``.
    """
    if explicit:
        return explicit
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if run_id:
        from mlflow import MlflowClient

        found = _launcher(run_id, MlflowClient(resolve_tracking_uri()))
        return question_experiment(model) if found is not None and _is_unnamed_launch(*found) else None
    if os.environ.get("MLFLOW_EXPERIMENT_NAME") or os.environ.get("MLFLOW_EXPERIMENT_ID"):
        return None
    return question_experiment(model)


def configure_tracking(experiment: str | None = None) -> str:
    """Point MLflow at the tracking store and, optionally, an experiment.

    Inside ``mlflow run`` (``MLFLOW_RUN_ID`` is set) the run already belongs to an experiment: when ``mlflow run``
    put it in ``Default`` because no experiment was named, a run in ``experiment`` takes its place and
    ``MLFLOW_RUN_ID`` points there (see the module docstring); when ``mlflow run`` was given an experiment,
    ``experiment`` is ignored with a warning.

    Args:
        experiment: Experiment name to create or use, or ``None`` for MLflow's choice
            (``MLFLOW_EXPERIMENT_NAME``/``MLFLOW_EXPERIMENT_ID`` or ``Default``); see :func:`experiment_for`.

    Returns:
        The tracking URI in use.

    Raises:
        StorageError: The tracking store cannot be reached, created, written or used.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = resolve_tracking_uri()
    check_tracking_store(uri)
    configure_http_retries()
    try:
        prepare_sqlite_store(uri)
    except (TimeoutError, MlflowException) as error:
        raise StorageError(f"the tracking store {uri} cannot be opened: {error}") from None
    # Appending a row to a logged table downloads it first; MLflow's progress bar for that is noise here.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(uri)
    run_id = os.environ.get("MLFLOW_RUN_ID")
    try:
        if experiment and run_id:
            _take_over_launch(run_id, experiment)
        elif experiment:
            mlflow.set_experiment(experiment)
    except MlflowException as error:
        raise StorageError(f"cannot use experiment {experiment!r} at {mask_url(uri)}: {error.message}") from None
    logger.info("tracking to %s", mask_url(uri))
    return uri


def _take_over_launch(run_id: str, experiment: str) -> None:
    """Inside ``mlflow run``: use ``experiment`` when ``mlflow run`` put its run in ``Default`` (else warn)."""
    import mlflow

    from mlperf_track.tracking.stale import identity_tags

    client = mlflow.MlflowClient()
    found = _launcher(run_id, client)
    if found is None:
        return
    launcher, current = found
    if current == experiment:
        return
    if not _is_unnamed_launch(launcher, current):
        logger.warning(
            "inside mlflow run the experiment is %r (chosen by mlflow run --experiment-name); ignoring %r",
            current,
            experiment,
        )
        return
    target = mlflow.set_experiment(experiment)
    tags = {key: value for key, value in launcher.data.tags.items() if key.startswith(_PROVENANCE_PREFIXES)}
    run = client.create_run(target.experiment_id, run_name=launcher.info.run_name, tags={**tags, LAUNCHER_TAG: run_id})
    client.set_tag(run_id, POINTER_RUN_TAG, run.info.run_id)
    client.set_tag(run_id, POINTER_EXPERIMENT_TAG, experiment)
    client.set_tag(run_id, "mlperf_track.role", "pointer")  # reports skip it (pipeline_run.ROLE_TAG)
    for key, value in identity_tags().items():  # so that a stale-run cleanup can close it if we are killed
        client.set_tag(run_id, key, value)
    _LAUNCHER["run_id"] = run_id
    client.set_tag(
        run_id,
        "mlflow.note.content",
        f"mlperf_track logged this run's results to experiment {experiment}, run {run.info.run_id} "
        "(name an experiment with mlflow run --experiment-name to keep them here).",
    )
    os.environ["MLFLOW_RUN_ID"] = run.info.run_id
    logger.info("results go to experiment %s (mlflow run's run %s in Default points there)", experiment, run_id)
