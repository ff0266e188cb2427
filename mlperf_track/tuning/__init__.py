"""Optuna tuning: search variant (compositions included), runtime, precision, runtime options, batch size and
CPU threads for the best feasible configuration under memory, latency and accuracy limits, with every trial a
nested MLflow run; multi-fidelity (a short first measurement, a pruner), cost-aware (preparation timed and
learnt, a time budget) and warm-started from earlier runs.

Public API::

    from mlperf_track.tuning import TuneConfig, run_tune
    config = TuneConfig.create("resnet18", device="cpu", n_trials=12, memory_limit_mb=2000, time_budget_s=300)
    outcome = run_tune(config)
    outcome.summary.best          # [best feasible trial] or the feasible Pareto front

The measurement is injectable: pass any :class:`TuningBackend` (``search_space``, ``template``, ``measure``)
to :func:`run_tune`; the default measures with :class:`~mlperf_track.pipeline.BenchmarkSession`.
Modules: ``config`` (TuneConfig = PipelineConfig + SearchSettings), ``space``/``choices`` (what is searched),
``objective`` (values, constraints, fidelity), ``pruning``, ``costs``/``budget`` (what trials cost, the time
budget), ``surrogate``/``costaware`` (the default sampler), ``sampling``, ``warmstart``, ``stopping``,
``dashboard``, ``storage`` (memory, SQLite, PostgreSQL with heartbeats), ``workers`` (shared budget),
``results``, ``plots``, ``tracking`` (MLflow), ``runner``.

Only :mod:`~mlperf_track.tuning.config` loads on import; everything that needs Optuna (the ``tune`` extra)
loads on first use, so the command line starts without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mlperf_track.tuning.config import OBJECTIVES, SAMPLERS, SearchSettings, TuneConfig, parse_batch_sizes

if TYPE_CHECKING:
    from mlperf_track.tuning.backend import SessionBackend, TuningBackend, build_space
    from mlperf_track.tuning.objective import Limits, Measurer, Target, TrialObjective, targets_for
    from mlperf_track.tuning.results import StudySummary, summarize, trials_frame
    from mlperf_track.tuning.runner import TuneOutcome, run_tune
    from mlperf_track.tuning.space import Choice, SearchSpace, TrialPoint

#: Lazily loaded names and their modules.
_LAZY = {
    "SessionBackend": "backend",
    "TuningBackend": "backend",
    "build_space": "backend",
    "Limits": "objective",
    "Measurer": "objective",
    "Target": "objective",
    "TrialObjective": "objective",
    "targets_for": "objective",
    "StudySummary": "results",
    "summarize": "results",
    "trials_frame": "results",
    "TuneOutcome": "runner",
    "run_tune": "runner",
    "Choice": "space",
    "SearchSpace": "space",
    "TrialPoint": "space",
}

__all__ = [
    "OBJECTIVES",
    "SAMPLERS",
    "Choice",
    "Limits",
    "Measurer",
    "SearchSettings",
    "SearchSpace",
    "SessionBackend",
    "StudySummary",
    "Target",
    "TrialObjective",
    "TrialPoint",
    "TuneConfig",
    "TuneOutcome",
    "TuningBackend",
    "build_space",
    "parse_batch_sizes",
    "run_tune",
    "summarize",
    "targets_for",
    "trials_frame",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"mlperf_track.tuning.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
