"""Export an experiment's runs, params, metrics, tags and raw latency samples as DuckDB or Parquet tables.

Tables (long format, one row per value, so runs with different metrics share one schema):

- ``runs``: run_id, run_name, experiment_id, experiment_name, status, start_time, end_time, parent_run_id

``--experiment`` takes a name or a prefix (``mlperf_track`` exports every ``mlperf_track/<model>`` experiment).
- ``params``: run_id, key, value (strings, as MLflow stores them)
- ``metrics``: run_id, key, value (the latest value of each metric; pipeline metrics have one)
- ``tags``: run_id, key, value (``mlflow.*`` system tags included)
- ``samples``: run_id, iteration, latency_ms (from each run's ``samples.csv`` artifact)

A ``.duckdb`` (or ``.db``) target is one DuckDB database file holding the five tables (replaced when they
exist). A ``.parquet`` target is a directory with one Parquet file per table (``results.parquet/runs.parquet``
...), which DuckDB, pandas, Polars and Spark read as they are, e.g.
``SELECT * FROM 'results.parquet/metrics.parquet'``. One wide row per run is a pivot away::

    PIVOT metrics ON key USING first(value) GROUP BY run_id
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from mlperf_track.errors import ConfigError, MissingDependencyError, StorageError
from mlperf_track.report.runs import SAMPLES_ARTIFACT, client, download_artifact, resolve_experiments, search_runs
from mlperf_track.report.samples import LATENCY_COLUMN

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities import Run

logger = logging.getLogger(__name__)

TABLES: Final = ("runs", "params", "metrics", "tags", "samples")
DUCKDB_SUFFIXES: Final = (".duckdb", ".db")
PARQUET_SUFFIXES: Final = (".parquet",)


def _runs_table(runs: list[Run], names: dict[str, str]) -> pd.DataFrame:
    import pandas as pd

    def stamp(milliseconds: int | None) -> pd.Timestamp:
        return pd.NaT if milliseconds is None else pd.Timestamp(milliseconds, unit="ms", tz="UTC")

    return pd.DataFrame(
        {
            "run_id": [run.info.run_id for run in runs],
            "run_name": [run.info.run_name or "" for run in runs],
            "experiment_id": [str(run.info.experiment_id) for run in runs],
            "experiment_name": [names.get(str(run.info.experiment_id), "") for run in runs],
            "status": [run.info.status for run in runs],
            "start_time": pd.Series([stamp(run.info.start_time) for run in runs], dtype="datetime64[ms, UTC]"),
            "end_time": pd.Series([stamp(run.info.end_time) for run in runs], dtype="datetime64[ms, UTC]"),
            "parent_run_id": [run.data.tags.get("mlflow.parentRunId") for run in runs],
        }
    )


def _key_values(runs: list[Run], attribute: str) -> pd.DataFrame:
    import pandas as pd

    rows = [(run.info.run_id, key, str(value)) for run in runs for key, value in getattr(run.data, attribute).items()]
    return pd.DataFrame(rows, columns=["run_id", "key", "value"]).astype("string")


def _metrics_table(runs: list[Run]) -> pd.DataFrame:
    import pandas as pd

    rows = [(run.info.run_id, key, float(value)) for run in runs for key, value in run.data.metrics.items()]
    frame = pd.DataFrame(rows, columns=["run_id", "key", "value"])
    return frame.astype({"run_id": "string", "key": "string", "value": "float64"})


def _samples_table(mlflow_client: MlflowClient, runs: list[Run]) -> pd.DataFrame:
    import pandas as pd

    frames = []
    with tempfile.TemporaryDirectory(prefix="mlperf_track_export_") as tmp:
        for run in runs:
            target = Path(tmp) / run.info.run_id
            target.mkdir()
            path = download_artifact(mlflow_client, run.info.run_id, SAMPLES_ARTIFACT, target)
            if path is None:
                continue
            latencies = pd.read_csv(path)[LATENCY_COLUMN].astype("float64")
            frames.append(
                pd.DataFrame(
                    {"run_id": run.info.run_id, "iteration": range(len(latencies)), "latency_ms": latencies.to_numpy()}
                )
            )
    empty = pd.DataFrame({"run_id": [], "iteration": [], "latency_ms": []})
    frame = pd.concat(frames, ignore_index=True) if frames else empty
    return frame.astype({"run_id": "string", "iteration": "int64", "latency_ms": "float64"})


def collect_tables(
    experiment: str, *, tracking_uri: str | None = None, include_samples: bool = True
) -> dict[str, pd.DataFrame]:
    """The export tables of ``experiment`` (a name or a prefix; see the module docstring) as pandas frames."""
    mlflow_client = client(tracking_uri)
    names = resolve_experiments(mlflow_client, experiment)
    runs = search_runs(mlflow_client, experiment, ids=names)
    tables = {
        "runs": _runs_table(runs, names),
        "params": _key_values(runs, "params"),
        "metrics": _metrics_table(runs),
        "tags": _key_values(runs, "tags"),
    }
    if include_samples:
        tables["samples"] = _samples_table(mlflow_client, runs)
    return tables


def export_format(target: Path) -> str:
    """``duckdb`` or ``parquet`` from the target's suffix."""
    suffix = target.suffix.lower()
    if suffix in DUCKDB_SUFFIXES:
        return "duckdb"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    raise ConfigError("--to", str(target), "a path ending in .duckdb, .db or .parquet")


def write_duckdb(tables: dict[str, pd.DataFrame], target: Path) -> None:
    """Write every table into the DuckDB database ``target`` (tables of the same name are replaced)."""
    try:
        import duckdb
    except ImportError:
        raise MissingDependencyError("duckdb", "report", "exporting to DuckDB") from None
    try:
        with duckdb.connect(str(target)) as connection:
            for name, frame in tables.items():
                connection.register("frame_view", frame)
                connection.execute(f'CREATE OR REPLACE TABLE "{name}" AS SELECT * FROM frame_view')
                connection.unregister("frame_view")
    except duckdb.Error as error:
        raise StorageError(f"cannot write the DuckDB database {target}: {error}") from None


def write_parquet(tables: dict[str, pd.DataFrame], target: Path) -> None:
    """Write every table as ``<target>/<table>.parquet`` (``target`` is a directory, created when missing)."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingDependencyError("pyarrow", "report", "exporting to Parquet") from None
    if target.exists() and not target.is_dir():
        raise ConfigError("--to", str(target), "a directory (or a new path) for the Parquet files")
    target.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        pq.write_table(_arrow_table(frame), target / f"{name}.parquet")


def _arrow_table(frame: pd.DataFrame) -> Any:
    """``frame`` as an Arrow table, column by column.

    ``pa.Table.from_pandas`` reads time-zone-aware columns through ``Series.values``, which pandas 3.1
    deprecates; those columns are converted from their UTC values and tagged with their zone instead.
    """
    import pandas as pd
    import pyarrow as pa

    columns = {}
    for name in frame.columns:
        series = frame[name]
        if isinstance(series.dtype, pd.DatetimeTZDtype):
            unit, zone = series.dtype.unit, str(series.dtype.tz)
            naive = pa.array(series.dt.tz_convert(None).to_numpy(), type=pa.timestamp(unit), from_pandas=True)
            columns[str(name)] = naive.cast(pa.timestamp(unit, tz=zone))
        else:
            columns[str(name)] = pa.array(series, from_pandas=True)
    return pa.table(columns)


def export_experiment(
    experiment: str, target: Path, *, tracking_uri: str | None = None, include_samples: bool = True
) -> dict[str, int]:
    """Export ``experiment`` to ``target`` (``.duckdb``/``.db`` file or ``.parquet`` directory).

    Returns:
        Row count per table.
    """
    kind = export_format(target)
    tables = collect_tables(experiment, tracking_uri=tracking_uri, include_samples=include_samples)
    if kind == "duckdb":
        write_duckdb(tables, target)
    else:
        write_parquet(tables, target)
    counts = {name: len(frame) for name, frame in tables.items()}
    logger.info("exported %s to %s: %s", experiment, target, counts)
    return counts
