"""mlperf_track: model performance work as a first-class citizen of MLflow.

Layers (imports point down only; see DESIGN.md)::

    cli / MLproject entry points
    tracking (mlflow)   tuning (optuna)   report
    pipeline
    variants            runtimes
    engine              profiling
    models              data
    spec + errors + metrics
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
