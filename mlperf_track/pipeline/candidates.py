"""The eligibility rule's candidates for the cases a pipeline run just measured, and the run's limits.

A :class:`~mlperf_track.engine.eligibility.Candidate` per case outcome, so every layer that asks "which case is
best?" about a pipeline run (its load stage, the console, the parent run) asks the one rule of
:mod:`mlperf_track.engine.eligibility`. Candidates of logged MLflow runs are :mod:`mlperf_track.report.candidates`'s,
those of Optuna trials :mod:`mlperf_track.tuning.results`'.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlperf_track.engine.eligibility import FAILED, FINISHED, Candidate, Limits
from mlperf_track.errors import OutOfMemoryError

if TYPE_CHECKING:
    from mlperf_track.pipeline.events import CaseOutcome, PipelineOutcome
    from mlperf_track.spec import CaseSpec


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


def question_label(model: object, image_size: object | None, dataset: object) -> tuple[str, ...]:
    """What a case answers: model, input size (``None``: unknown), dataset (two questions are never ranked together)."""
    size = "" if image_size is None else f"{image_size} px"
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
        question=question_label(case.model, case.image_size, case.dataset),
    )


def outcome_limits(outcome: PipelineOutcome) -> Limits:
    """The limits of the run (its accuracy limit)."""
    return Limits(max_accuracy_drop=outcome.config.max_accuracy_drop)
