"""Candidates for the eligibility rule, from what each caller holds: a pipeline outcome or a logged MLflow run.

A pipeline outcome's are built by :mod:`mlperf_track.pipeline.candidates`, a logged run's here, and the tuner
builds its own from Optuna trials (:mod:`mlperf_track.tuning.results`). Every source maps to the same
:class:`~mlperf_track.engine.eligibility.Candidate`, so the rule and the recommendation never depend on where a
case came from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from mlperf_track import metrics as m
from mlperf_track.engine.eligibility import FAILED, FINISHED, Candidate
from mlperf_track.errors import OutOfMemoryError
from mlperf_track.pipeline.candidates import question_label

__all__ = ["OUT_OF_MEMORY_ERROR", "from_record", "parse_valid", "question_of"]

#: The error type a run records when its case ran out of memory.
OUT_OF_MEMORY_ERROR = OutOfMemoryError.__name__


def question_of(model: object, image_size: object, dataset: object) -> tuple[str, ...]:
    """What a logged case answers (:func:`~mlperf_track.pipeline.candidates.question_label`; NaN: unknown)."""
    return question_label(model, None if _missing(image_size) else _plain(image_size), dataset)


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        import pandas as pd

        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _tag(row: Mapping[str, Any], key: str) -> str | None:
    """A tag of a run record (:func:`mlperf_track.report.runs.run_record` prefixes it when a param clashes)."""
    for name in (f"tag.{key}", key):
        value = row.get(name)
        if isinstance(value, str):
            return value
    return None


def parse_valid(text: str | None) -> bool | None:
    """The ``valid`` tag as a bool (``None`` when absent or unreadable)."""
    if text is None:
        return None
    value = text.strip().lower()
    return True if value == "true" else False if value == "false" else None


def from_record(row: Mapping[str, Any]) -> Candidate:
    """The candidate of a logged case run (one row of :func:`mlperf_track.report.runs.runs_frame`)."""
    metrics = {
        str(key): float(value)
        for key, value in row.items()
        if "/" in str(key)
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    }
    status = str(row.get("status") or "FINISHED").lower()
    error_type, error_message = _tag(row, "error.type"), _tag(row, "error.message")
    error = f"{error_type}: {error_message}" if error_type else ""
    reasons = _tag(row, m.VALID_REASONS_TAG)
    batch = row.get("batch_size")
    core = tuple(str(row.get(key)) for key in ("variant", "runtime", "precision"))
    return Candidate(
        name=str(row.get("run_name") or row.get("run_id") or "?"),
        config=str(row.get("config") or "/".join(core)),
        variant=str(row.get("variant")),
        runtime=str(row.get("runtime")),
        precision=str(row.get("precision")),
        batch_size=None if batch is None or _missing(batch) else int(batch),
        device=str(row.get("device") or "cpu"),
        status={"finished": FINISHED, "failed": FAILED}.get(status, status),
        metrics=metrics,
        valid=parse_valid(_tag(row, m.VALID_TAG)),
        invalid_reasons=tuple(reasons.split("; ")) if reasons else (),
        error=error,
        out_of_memory=error_type == OUT_OF_MEMORY_ERROR,
        run_id=str(row.get("run_id") or ""),
        hardware=str(row.get("hardware") or ""),
        question=question_of(row.get("model"), row.get("image_size"), row.get("dataset")),
    )
