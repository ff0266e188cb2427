"""Raw per-iteration latencies of a run, from MLflow or from a local file."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlperf_track.errors import DataError
from mlperf_track.report.runs import RESULT_ARTIFACT, SAMPLES_ARTIFACT, client, download_artifact, resolve_run

if TYPE_CHECKING:
    import numpy as np

#: Column of the latencies in ``samples.csv``.
LATENCY_COLUMN = "latency_ms"
#: Artifact folder of an evaluator run (``mlperf_track/samples_bs<N>.csv``).
EVALUATOR_DIR = "mlperf_track"
#: Fewest samples a comparison accepts.
MIN_SAMPLES = 5


@dataclass(frozen=True)
class Samples:
    """Latencies of one run or file.

    Attributes:
        name: Where they came from (a file path, or ``run <id> (<run name>)``).
        latency_ms: One latency per timed iteration, in milliseconds.
    """

    name: str
    latency_ms: np.ndarray


def _checked(name: str, values: Any) -> Samples:
    import numpy as np

    array = np.asarray(values, dtype=float).ravel()
    if array.size < MIN_SAMPLES:
        raise DataError(f"{name} holds {array.size} latency samples; a comparison needs at least {MIN_SAMPLES}")
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise DataError(f"{name} holds non-finite or negative latencies; re-run the benchmark")
    return Samples(name, array)


def samples_from_csv(path: Path, name: str | None = None) -> Samples:
    """Read a ``samples.csv`` (a ``latency_ms`` column, one row per iteration)."""
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read latency samples from {path}: {error}") from None
    if LATENCY_COLUMN not in frame.columns:
        raise DataError(f"{path} has no {LATENCY_COLUMN!r} column (columns: {', '.join(map(str, frame.columns))})")
    return _checked(name or str(path), frame[LATENCY_COLUMN].to_numpy())


def samples_from_json(path: Path, name: str | None = None) -> Samples:
    """Read ``samples_ms`` from a result JSON (one :class:`BenchmarkResult`, or a ``results`` list of one)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read result JSON {path}: {error}") from None
    if isinstance(data, dict) and "results" in data:
        results = data["results"]
        if len(results) != 1:
            names = [item.get("case", {}).get("model", "?") for item in results]
            raise DataError(f"{path} holds {len(results)} results ({names}); write one case per file to compare")
        data = results[0]
    if not isinstance(data, dict) or "samples_ms" not in data:
        raise DataError(f"{path} is not a benchmark result JSON: it has no 'samples_ms'")
    return _checked(name or str(path), data["samples_ms"])


def samples_from_file(path: Path) -> Samples:
    """Latencies from a ``.csv`` or ``.json`` file."""
    if path.suffix.lower() == ".json":
        return samples_from_json(path)
    return samples_from_csv(path)


def samples_from_run(run_id: str, *, tracking_uri: str | None = None) -> Samples:
    """Latencies of an MLflow run: its ``samples.csv`` artifact, else the ``samples_ms`` of ``result.json``."""
    mlflow_client = client(tracking_uri)
    run = mlflow_client.get_run(run_id)
    name = f"run {run_id[:8]} ({run.info.run_name})"
    with tempfile.TemporaryDirectory(prefix="mlperf_track_samples_") as tmp:
        path = download_artifact(mlflow_client, run_id, SAMPLES_ARTIFACT, Path(tmp))
        if path is not None:
            return samples_from_csv(path, name)
        path = download_artifact(mlflow_client, run_id, RESULT_ARTIFACT, Path(tmp))
        if path is not None:
            return samples_from_json(path, name)
    per_batch = [item.path for item in mlflow_client.list_artifacts(run_id, EVALUATOR_DIR) if "samples_bs" in item.path]
    if per_batch:
        raise DataError(
            f"{name} is an evaluator run with one file per batch size ({', '.join(per_batch)}): download one "
            f"(mlflow artifacts download -r {run_id} -a {per_batch[0]}) and compare the file"
        )
    raise DataError(f"{name} has neither a {SAMPLES_ARTIFACT} nor a {RESULT_ARTIFACT} artifact")


def resolve_ref(
    ref: str, *, tracking_uri: str | None = None, experiment: str | None = None, parameter: str = "run"
) -> str:
    """``ref`` as a file path or a run id: a run name (within ``experiment`` when given) becomes its run's id.

    Raises:
        DataError: ``ref`` looks like a file (``.csv``/``.json``) that does not exist.
        ConfigError: No run has that id or name, or several runs share the name (their ids are listed).
    """
    path = Path(ref).expanduser()
    if path.is_file():
        return ref
    if path.suffix.lower() in (".csv", ".json"):
        raise DataError(f"no such file: {ref}")
    run = ref.removeprefix("runs:/").strip("/").split("/")[0] if ref.startswith("runs:/") else ref
    return resolve_run(client(tracking_uri), run, experiment=experiment, parameter=parameter)


def load_samples(
    ref: str, *, tracking_uri: str | None = None, experiment: str | None = None, parameter: str = "run"
) -> Samples:
    """Latencies from a local ``samples.csv``/result JSON path, a run id, a ``runs:/<id>`` URI or a run name.

    Args:
        ref: What to read.
        tracking_uri: Tracking URI, or ``None`` for MLflow's current one.
        experiment: Where a run name is looked up (a name or a prefix); ``None``: every experiment.
        parameter: The flag ``ref`` came from, for error messages (``--baseline``).
    """
    resolved = resolve_ref(ref, tracking_uri=tracking_uri, experiment=experiment, parameter=parameter)
    if Path(resolved).expanduser().is_file():
        return samples_from_file(Path(resolved).expanduser())
    return samples_from_run(resolved, tracking_uri=tracking_uri)
