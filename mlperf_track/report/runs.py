"""Reading runs and their artifacts back from MLflow, as pandas frames.

The report layer sits beside :mod:`mlperf_track.tracking` (see DESIGN.md): tracking writes runs, this module
reads them. ``mlflow`` is imported inside the functions, so importing the report package stays cheap.
Every function takes an explicit ``tracking_uri``; ``None`` means MLflow's current one (the CLI sets it with
:func:`mlperf_track.tracking.setup.configure_tracking`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlperf_track.errors import ConfigError, StorageError
from mlperf_track.spec import closest_matches

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities import Run

logger = logging.getLogger(__name__)

#: Artifact of raw per-iteration latencies at a case run's artifact root (column ``latency_ms``).
SAMPLES_ARTIFACT = "samples.csv"
#: Artifact of the full result (``BenchmarkResult.to_dict``) at a case run's artifact root.
RESULT_ARTIFACT = "result.json"
#: Params that hold integers.
INTEGER_PARAMS = ("batch_size", "image_size", "seq_len", "prompt_len", "output_len")
#: Columns that describe a run rather than its params, metrics or tags.
RUN_COLUMNS = ("run_id", "run_name", "experiment_id", "status", "start_time", "end_time", "parent_run_id")
#: Tag naming what a run is for (the same key as the pipeline's parent runs: ``pipeline``, ``report``).
ROLE_TAG = "mlperf_track.role"
_PAGE_SIZE = 1000


def client(tracking_uri: str | None = None) -> MlflowClient:
    """An MLflow client for ``tracking_uri`` (MLflow's current URI when ``None``)."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def experiment_id(mlflow_client: MlflowClient, name: str) -> str:
    """The id of the experiment called ``name``.

    Raises:
        ConfigError: No such experiment; the message lists the closest names.
        StorageError: The tracking store cannot be read.
    """
    from mlflow.exceptions import MlflowException

    try:
        experiment = mlflow_client.get_experiment_by_name(name)
        if experiment is not None:
            return str(experiment.experiment_id)
        names = [item.name for item in _all_experiments(mlflow_client)]
    except MlflowException as error:
        raise StorageError(f"cannot read experiments from the tracking store: {error.message}") from None
    raise _unknown_experiment(name, names)


def _unknown_experiment(name: str, names: list[str]) -> ConfigError:
    matches = closest_matches(name, names)
    hint = f"did you mean {', '.join(matches)}?" if matches else f"existing: {', '.join(sorted(names)) or 'none'}"
    return ConfigError("experiment", name, "the name of an existing MLflow experiment, or a prefix of names", hint=hint)


def _all_experiments(mlflow_client: MlflowClient) -> list[Any]:
    """Every active experiment (all pages)."""
    from mlflow.entities import ViewType

    experiments: list[Any] = []
    token: str | None = None
    while True:
        page = mlflow_client.search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token)
        experiments.extend(page)
        token = page.token
        if not token:
            return experiments


def resolve_experiments(mlflow_client: MlflowClient, name_or_prefix: str) -> dict[str, str]:
    """The experiments ``name_or_prefix`` means, as ``{id: name}`` sorted by name.

    The experiment of that name and every one under ``name/`` (runs go to ``mlperf_track/<model>``, so
    ``mlperf_track`` means all of them); ``mlperf_track/`` or ``mlperf_track/*`` only those under it. The same
    rule as ``resolve_experiments`` of :mod:`mlperf_track.tracking.setup`, kept here so the report layer reads
    the store without the tracking layer.

    Raises:
        ConfigError: Nothing matches; the message lists the closest names.
        StorageError: The tracking store cannot be read.
    """
    from mlflow.exceptions import MlflowException

    wanted = name_or_prefix.strip().rstrip("*")
    exact = None if wanted.endswith("/") else wanted
    children = wanted if wanted.endswith("/") else f"{wanted}/"
    try:
        experiments = _all_experiments(mlflow_client)
    except MlflowException as error:
        raise StorageError(f"cannot read experiments from the tracking store: {error.message}") from None
    found = {str(e.experiment_id): e.name for e in experiments if e.name == exact or e.name.startswith(children)}
    if not found:
        raise _unknown_experiment(name_or_prefix, [item.name for item in experiments])
    return dict(sorted(found.items(), key=lambda item: item[1]))


def search_runs(mlflow_client: MlflowClient, experiment: str, ids: Iterable[str] | None = None) -> list[Run]:
    """Every active run of the experiment(s) ``experiment`` names (a name or a prefix), oldest first.

    ``ids``: the experiment ids when already resolved (``experiment`` is then only used in messages).
    """
    ids = list(ids) if ids is not None else list(resolve_experiments(mlflow_client, experiment))
    runs: list[Run] = []
    token: str | None = None
    while True:
        page = mlflow_client.search_runs(ids, max_results=_PAGE_SIZE, page_token=token, order_by=["start_time ASC"])
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _timestamp(milliseconds: int | None) -> pd.Timestamp | None:
    import pandas as pd

    return None if milliseconds is None else pd.Timestamp(milliseconds, unit="ms", tz="UTC")


def run_record(run: Run) -> dict[str, Any]:
    """One run as a flat dict: run fields, params (strings), metrics (latest values), and non-MLflow tags."""
    info, data = run.info, run.data
    record: dict[str, Any] = {
        "run_id": info.run_id,
        "run_name": info.run_name or data.tags.get("mlflow.runName", ""),
        "experiment_id": info.experiment_id,
        "status": info.status,
        "start_time": _timestamp(info.start_time),
        "end_time": _timestamp(info.end_time),
        "parent_run_id": data.tags.get("mlflow.parentRunId"),
    }
    record.update(data.params)
    record.update(data.metrics)
    for key, value in data.tags.items():
        if not key.startswith("mlflow."):
            record[key if key not in record else f"tag.{key}"] = value
    return record


def runs_frame(runs: Iterable[Run]) -> pd.DataFrame:
    """Runs as one tidy row each: metric keys (``latency/p50_ms``) and param names are the columns.

    Integer params (batch size, image size) become nullable integers; a metric a run lacks is NaN.
    """
    import pandas as pd

    frame = pd.DataFrame.from_records([run_record(run) for run in runs])
    if frame.empty:
        return pd.DataFrame(columns=list(RUN_COLUMNS))
    for column in INTEGER_PARAMS:
        if column in frame:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("Int64")
    return frame


def load_runs(experiment: str, *, tracking_uri: str | None = None, parent_run_id: str | None = None) -> pd.DataFrame:
    """The runs of ``experiment`` as a tidy frame (see :func:`runs_frame`).

    Args:
        experiment: Experiment name, or a prefix of names (see :func:`resolve_experiments`); the column
            ``experiment`` holds each run's experiment name.
        tracking_uri: Tracking URI, or ``None`` for MLflow's current one.
        parent_run_id: Keep only the child runs of this parent run.
    """
    mlflow_client = client(tracking_uri)
    names = resolve_experiments(mlflow_client, experiment)
    frame = runs_frame(search_runs(mlflow_client, experiment, ids=names))
    frame["experiment"] = frame["experiment_id"].astype(str).map(names)
    if parent_run_id is not None and not frame.empty:
        frame = frame[frame["parent_run_id"] == parent_run_id].reset_index(drop=True)
    return frame


def resolve_run(mlflow_client: MlflowClient, ref: str, *, experiment: str | None = None, parameter: str = "run") -> str:
    """The id of the run ``ref`` names: a run id, or a run name (within ``experiment`` when given).

    Raises:
        ConfigError: No run has that id or name, or several runs share the name (the message lists them with
            their ids, experiments and start times, and says how to pick one).
        StorageError: The tracking store cannot be read.
    """
    from mlflow.exceptions import MlflowException

    try:
        return str(mlflow_client.get_run(ref).info.run_id)
    except MlflowException:
        pass
    try:
        if experiment is not None:
            names = resolve_experiments(mlflow_client, experiment)
        else:
            names = {str(item.experiment_id): item.name for item in _all_experiments(mlflow_client)}
        quoted = f'"{ref}"' if "'" in ref else f"'{ref}'"
        found = mlflow_client.search_runs(
            list(names), filter_string=f"attributes.run_name = {quoted}", max_results=50, order_by=["start_time DESC"]
        )
    except MlflowException as error:
        raise StorageError(f"cannot search runs in the tracking store: {error.message}") from None
    allowed = "a run id, a run name, runs:/<id>, or a samples.csv/result JSON file"
    where = f" in experiment(s) {', '.join(names.values())}" if experiment is not None else ""
    if not found:
        hint = (
            f"no run has that id or name{where}; find run ids in the MLflow UI, with "
            "`mlflow runs list --experiment-id ID`, or with `mlperf-track export`"
        )
        raise ConfigError(parameter, ref, allowed, hint=hint)
    if len(found) > 1:
        listed = "; ".join(
            f"{run.info.run_id} in {names.get(str(run.info.experiment_id), run.info.experiment_id)}, "
            f"started {_timestamp(run.info.start_time):%Y-%m-%d %H:%M} UTC"
            for run in found[:5]
        )
        more = f" and {len(found) - 5} more" if len(found) > 5 else ""
        hint = f"{len(found)} runs are named so{where} ({listed}{more}): pass one of their ids"
        if experiment is None:
            hint += ", or narrow the search with --experiment"
        raise ConfigError(parameter, ref, allowed, hint=hint)
    return str(found[0].info.run_id)


def download_artifact(mlflow_client: MlflowClient, run_id: str, path: str, directory: Path) -> Path | None:
    """Download one artifact of a run into ``directory``; ``None`` when the run has no such artifact."""
    from mlflow.exceptions import MlflowException

    try:
        folder = str(Path(path).parent)
        names = {item.path for item in mlflow_client.list_artifacts(run_id, None if folder == "." else folder)}
        if path not in names:
            return None
        return Path(mlflow_client.download_artifacts(run_id, path, str(directory)))
    except MlflowException as error:
        raise StorageError(f"cannot read artifact {path} of run {run_id}: {error.message}") from None


def log_files(
    files: dict[str, Path],
    *,
    artifact_dir: str,
    run_id: str | None = None,
    experiment: str | None = None,
    run_name: str = "report",
    tracking_uri: str | None = None,
) -> str:
    """Log ``files`` under ``artifact_dir`` of run ``run_id``, or of a new run in ``experiment``.

    Returns:
        The id of the run the files went to.
    """
    mlflow_client = client(tracking_uri)
    if run_id is not None:
        _log_artifacts(mlflow_client, run_id, files, artifact_dir)
        return run_id
    if experiment is None:
        raise ConfigError("experiment", None, "an experiment name when no run id is given")
    run = mlflow_client.create_run(
        experiment_id(mlflow_client, experiment), run_name=run_name, tags={ROLE_TAG: "report"}
    )
    try:
        _log_artifacts(mlflow_client, run.info.run_id, files, artifact_dir)
    except BaseException:
        mlflow_client.set_terminated(run.info.run_id, "FAILED")
        raise
    mlflow_client.set_terminated(run.info.run_id, "FINISHED")
    return str(run.info.run_id)


def _log_artifacts(mlflow_client: MlflowClient, run_id: str, files: dict[str, Path], artifact_dir: str) -> None:
    for name, path in files.items():
        # ``name`` may hold a sub-folder (``figures/latency.png``): keep it under ``artifact_dir``.
        parent = str(Path(name).parent)
        folder = artifact_dir if parent == "." else f"{artifact_dir}/{parent}"
        mlflow_client.log_artifact(run_id, str(path), artifact_path=folder)
    logger.info("logged %d report files to run %s", len(files), run_id)
