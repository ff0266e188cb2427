"""The MLflow adapter: tracking setup, per-case logging, the pipeline listener and the MLflow plugins.

Public API::

    configure_tracking(experiment=None) -> str               # tracking.setup
    log_case_result(result, artifacts=None); mark_run_failed(error)   # tracking.logging
    MlflowPipelineListener(parent_run_id)                    # tracking.listener
    run_tracked_pipeline(config, *, experiment=None)         # tracking.pipeline_run
    MlflowModelSource                                        # tracking.model_source (models:/, runs:/)
    MlperfTrackEvaluator                                     # tracking.evaluator (mlflow.models.evaluate)
    MlperfTrackRunContextProvider                            # tracking.context (hw/sw tags on every run)

The model registry knows :class:`~mlperf_track.tracking.model_source.MlflowModelSource` by name and imports it
when a ``models:/`` or ``runs:/`` reference is loaded, so nothing needs to import this package first. MLflow
imports this package while ``import mlflow`` runs (the run context provider entry point), so nothing here
imports mlflow, torch or any other module of the package at module level.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "MlflowModelSource",
    "MlflowPipelineListener",
    "configure_tracking",
    "log_case_result",
    "mark_run_failed",
    "run_tracked_pipeline",
]

_LAZY = {
    "MlflowModelSource": "mlperf_track.tracking.model_source",
    "configure_tracking": "mlperf_track.tracking.setup",
    "log_case_result": "mlperf_track.tracking.logging",
    "mark_run_failed": "mlperf_track.tracking.logging",
    "MlflowPipelineListener": "mlperf_track.tracking.listener",
    "run_tracked_pipeline": "mlperf_track.tracking.pipeline_run",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
