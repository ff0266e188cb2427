"""Log one :class:`BenchmarkResult` into an MLflow run, and mark runs that failed.

What a case's run holds: the case as params (:meth:`CaseSpec.params`), the metrics under their DESIGN.md
names, hardware/software and result facts as tags, every note as a ``note.<metric>`` tag (why a metric is
absent), warnings as one ``warnings`` tag, and as artifacts the raw per-iteration latencies (``samples.csv``)
and the result JSON (``result.json``), plus profiler output under ``profile/`` when the case was profiled.
"""

from __future__ import annotations

import csv
import logging
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from mlperf_track import metrics as m
from mlperf_track.tracking.context import hardware_software_tags

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

    from mlperf_track.engine.result import BenchmarkResult
    from mlperf_track.spec import CaseSpec

logger = logging.getLogger(__name__)

SAMPLES_FILE = "samples.csv"
RESULT_FILE = "result.json"
#: Artifact folder of profiler output (trace, flame graph, top operators).
PROFILE_DIR = "profile"
#: Tag keys for a failed run.
ERROR_TYPE_TAG = "error.type"
ERROR_MESSAGE_TAG = "error.message"
#: MLflow allows 8000 characters per tag value; keep well inside it.
MAX_TAG_CHARS = 5000


def clip(text: str, limit: int = MAX_TAG_CHARS) -> str:
    """``text``, shortened with ``...`` to at most ``limit`` characters (MLflow limits tag values)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def active_run_or_raise() -> Run:
    """The active MLflow run.

    Raises:
        RuntimeError: No run is active (a programming error: callers start one first).
    """
    import mlflow

    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("no active MLflow run: start one with mlflow.start_run() first")
    return run


def result_tags(result: BenchmarkResult) -> dict[str, str]:
    """Tags for a result: machine facts, the result's own tags, notes and warnings."""
    tags = {**hardware_software_tags(), **result.tags}
    tags.update({f"note.{key}": clip(note) for key, note in result.notes.items()})
    if result.warnings:
        tags["warnings"] = clip("; ".join(result.warnings))
    tags[m.VALID_TAG] = str(result.valid).lower()
    if result.invalid_reasons:
        tags[m.VALID_REASONS_TAG] = clip("; ".join(result.invalid_reasons))
    return {key: clip(str(value)) for key, value in tags.items()}


def write_samples_csv(samples_ms: tuple[float, ...] | list[float], path: Path) -> Path:
    """Write raw latencies as ``iteration,latency_ms`` rows (the pipeline's format) and return the path."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["iteration", "latency_ms"])
        writer.writerows(enumerate(samples_ms))
    return path


def log_case_result(
    result: BenchmarkResult,
    artifacts: Mapping[str, Path] | None = None,
    *,
    run_id: str | None = None,
    client: MlflowClient | None = None,
) -> None:
    """Log ``result`` into a run: params, metrics and tags in one batch, then the files.

    Args:
        result: The measured case.
        artifacts: Files by name as in :attr:`CaseOutcome.artifacts`. ``samples.csv`` and ``result.json`` are
            written from ``result`` when missing; other files (profiler output) go under ``profile/``.
        run_id: The run (default: the active run).
        client: The client to log with (default: one for the current tracking URI).

    Raises:
        RuntimeError: No ``run_id`` and no active run.
    """
    import mlflow
    from mlflow.entities import Metric, Param, RunTag

    run_id = run_id or active_run_or_raise().info.run_id
    client = client or mlflow.MlflowClient()
    now_ms = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(key, float(value), now_ms, 0) for key, value in result.metrics.items()],
        params=[Param(key, value) for key, value in result.case.params().items()],
        tags=[RunTag(key, value) for key, value in result_tags(result).items()],
    )
    files = dict(artifacts or {})
    with tempfile.TemporaryDirectory(prefix="mlperf_track_") as tmp:
        if SAMPLES_FILE not in files or not Path(files[SAMPLES_FILE]).is_file():
            files[SAMPLES_FILE] = write_samples_csv(result.samples_ms, Path(tmp) / SAMPLES_FILE)
        if RESULT_FILE not in files or not Path(files[RESULT_FILE]).is_file():
            files[RESULT_FILE] = result.write_json(Path(tmp) / RESULT_FILE)
        for name, path in files.items():
            if not Path(path).is_file():
                logger.warning("artifact %s of %s is missing at %s; not logged", name, result.case.name, path)
                continue
            folder = None if name in (SAMPLES_FILE, RESULT_FILE) else PROFILE_DIR
            client.log_artifact(run_id, str(path), artifact_path=folder)


def log_failed_case(
    case: CaseSpec,
    error: BaseException,
    artifacts: Mapping[str, Path] | None,
    *,
    run_id: str,
    client: MlflowClient,
) -> None:
    """Log a case that failed: its params, ``error.type``/``error.message``, and any file it still produced
    (a trace of the failing call) under ``profile/``."""
    from mlflow.entities import Param, RunTag

    client.log_batch(
        run_id,
        params=[Param(key, value) for key, value in case.params().items()],
        tags=[RunTag(key, value) for key, value in error_tags(error).items()],
    )
    for path in (artifacts or {}).values():
        if Path(path).is_file():
            client.log_artifact(run_id, str(path), artifact_path=PROFILE_DIR)


def error_tags(error: BaseException) -> dict[str, str]:
    """``error.type`` and ``error.message`` tags for ``error``."""
    message = str(error) or repr(error)
    return {ERROR_TYPE_TAG: type(error).__name__, ERROR_MESSAGE_TAG: clip(message)}


def mark_run_failed(error: BaseException) -> None:
    """Tag the active run with ``error.type``/``error.message`` and end it ``FAILED``.

    Raises:
        RuntimeError: No run is active.
    """
    import mlflow

    active_run_or_raise()
    mlflow.set_tags(error_tags(error))
    mlflow.end_run(status="FAILED")
