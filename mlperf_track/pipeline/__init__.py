"""Compose the layers: model -> variant -> runtime -> engine -> result.

Public API: :func:`run_pipeline`, :class:`BenchmarkSession`, :class:`PipelineConfig`, the listener events
(:class:`PipelineListener`, :class:`CaseOutcome`, :class:`PipelineOutcome`) and :func:`auto_defaults`.
The runner and session (which import torch and the engine) load on first use, so importing the
configuration stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlperf_track.pipeline.config import PipelineConfig
from mlperf_track.pipeline.defaults import auto_defaults
from mlperf_track.pipeline.events import CaseOutcome, ListenerGroup, PipelineListener, PipelineOutcome

if TYPE_CHECKING:
    from mlperf_track.pipeline.runner import run_pipeline
    from mlperf_track.pipeline.session import BenchmarkSession

__all__ = [
    "BenchmarkSession",
    "CaseOutcome",
    "ListenerGroup",
    "PipelineConfig",
    "PipelineListener",
    "PipelineOutcome",
    "auto_defaults",
    "run_pipeline",
]


def __getattr__(name: str) -> Any:
    if name == "run_pipeline":
        from mlperf_track.pipeline.runner import run_pipeline

        return run_pipeline
    if name == "BenchmarkSession":
        from mlperf_track.pipeline.session import BenchmarkSession

        return BenchmarkSession
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
