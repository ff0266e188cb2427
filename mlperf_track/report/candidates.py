"""Candidates for the eligibility rule, from what each caller holds: a pipeline outcome or a logged MLflow run.

The tuner builds its own from Optuna trials (:mod:`mlperf_track.tuning.results`). Every source maps to the
same :class:`~mlperf_track.report.eligibility.Candidate`, so the rule and the recommendation never depend on
where a case came from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mlperf_track import metrics as m
from mlperf_track.errors import OutOfMemoryError
from mlperf_track.report.eligibility import FAILED, FINISHED, Candidate

if TYPE_CHECKING:
    from mlperf_track.pipeline.events import CaseOutcome
    from mlperf_track.spec import CaseSpec

#: The error type a run records when its case ran out of memory.
OUT_OF_MEMORY_ERROR = OutOfMemoryError.__name__


def configuration_label(variant: str, runtime: str, precision: str, extras: tuple[str, ...] = ()) -> str:
    """``variant/runtime/precision`` plus any extra parts (``threads=4``, ``compile_mode=max-autotune``)."""
    return "/".join((variant, runtime, precision, *extras))


def case_label(case: CaseSpec) -> str:
    """The configuration of a case: variant/runtime/precision, channels-last, threads and options."""
    extras = ["cl"] if case.channels_last else []
    if case.num_threads is not None:
        extras.append(f"threads={case.num_threads}")
    extras += [f"{key}={value}" for key, value in case.options]
    return configuration_label(case.variant, case.runtime, case.precision, tuple(extras))


def question_of(model: object, image_size: object, dataset: object) -> tuple[str, ...]:
    """What a case answers: model, input size and dataset (cases of two questions are never ranked together)."""
    size = "" if _missing(image_size) else f"{_plain(image_size)} px"
    return (str(model or "?"), size or "? px", str(dataset or "?"))


def from_outcome(outcome: CaseOutcome, run_id: str = "", hardware: str = "") -> Candidate:
    """The candidate of a case the pipeline just ran (a result, or the error it ended with)."""
    case, result, error = outcome.case, outcome.result, outcome.error
    return Candidate(
        name=case.name,
        config=case_label(case),
        variant=case.variant,
        runtime=case.runtime,
        precision=case.precision,
        batch_size=case.batch_size,
        device=case.device,
        status=FINISHED if result is not None else FAILED,
        metrics=dict(result.metrics) if result is not None else {},
        valid=result.valid if result is not None else None,
        invalid_reasons=result.invalid_reasons if result is not None else (),
        error="" if error is None else f"{type(error).__name__}: {error}",
        out_of_memory=isinstance(error, OutOfMemoryError),
        run_id=run_id,
        hardware=hardware,
        question=question_of(case.model, case.image_size, case.dataset),
    )


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
