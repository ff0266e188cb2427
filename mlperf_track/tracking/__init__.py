"""The MLflow adapter: tracking setup, per-case logging, the pipeline listener and the MLflow plugins.

Public API::

    configure_tracking(experiment=None) -> str               # tracking.setup
    log_case_result(result, artifacts=None); mark_run_failed(error)   # tracking.logging
    MlflowPipelineListener(parent_run_id)                    # tracking.listener
    run_tracked_pipeline(config, *, experiment=None)         # tracking.pipeline_run
    MlflowModelSource                                        # tracking.model_source (models:/, runs:/)
    MlperfTrackEvaluator                                     # tracking.evaluator (mlflow.models.evaluate)
    MlperfTrackRunContextProvider                            # tracking.context (hw/sw tags on every run)

Importing this package registers :class:`~mlperf_track.tracking.model_source.MlflowModelSource` with the
model registry, so ``load_model("models:/name/1")`` works. MLflow imports this package while ``import mlflow``
runs (the run context provider entry point), so nothing here imports mlflow or torch at module level.
"""

from __future__ import annotations

from typing import Any

from mlperf_track.models.registry import register_model_source
from mlperf_track.tracking.model_source import MlflowModelSource

register_model_source(MlflowModelSource())

__all__ = [
    "MlflowModelSource",
    "MlflowPipelineListener",
    "configure_tracking",
    "log_case_result",
    "mark_run_failed",
    "run_tracked_pipeline",
]

_LAZY = {
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
