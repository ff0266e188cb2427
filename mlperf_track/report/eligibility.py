"""Which measured case may be named best: the rule, as the report and the layers above it import it.

The rule itself lives in :mod:`mlperf_track.engine.eligibility` (and the ranking in
:mod:`mlperf_track.engine.ranking`), below the pipeline, so the pipeline applies the same rule when it picks the
case its load stage serves. This module re-exports both, so the report, tracking, tuning and the CLI keep one
import for the rule and everything it answers.
"""

from __future__ import annotations

from mlperf_track.engine.eligibility import (
    CATEGORIES,
    FAILED,
    FINISHED,
    KILLED,
    MEMORY_KEYS,
    NEXT_TOKEN_KEYS,
    NO_MEASURABLE_CHANGE,
    RUNNING,
    TOP1_KEYS,
    Candidate,
    Limits,
    Verdict,
    accuracy_change,
    describe_delta,
    judge,
)
from mlperf_track.engine.ranking import Objective, Ranking, pareto_front, rank

__all__ = [
    "CATEGORIES",
    "FAILED",
    "FINISHED",
    "KILLED",
    "MEMORY_KEYS",
    "NEXT_TOKEN_KEYS",
    "NO_MEASURABLE_CHANGE",
    "RUNNING",
    "TOP1_KEYS",
    "Candidate",
    "Limits",
    "Objective",
    "Ranking",
    "Verdict",
    "accuracy_change",
    "describe_delta",
    "judge",
    "pareto_front",
    "rank",
]
