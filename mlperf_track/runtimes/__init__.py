"""Runtimes: ways of running a model (eager, torch.compile, ONNX Runtime, TensorRT, OpenVINO).

Use :func:`get_runtime` to get one by name and :func:`runtime_names` to list them; the interface lives in
:mod:`mlperf_track.runtimes.base`.
"""

from __future__ import annotations

from mlperf_track.runtimes.base import PreparedModel, PrepareRequest, Runtime, RuntimeCapabilities
from mlperf_track.runtimes.registry import get_runtime, runtime_names

__all__ = ["PrepareRequest", "PreparedModel", "Runtime", "RuntimeCapabilities", "get_runtime", "runtime_names"]
