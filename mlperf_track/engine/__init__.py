"""The measurement engine: time a callable, read side monitors, summarise; never imports mlflow or optuna.

Public surface (imported lazily, so ``import mlperf_track.engine`` stays cheap and never loads pynvml)::

    measure_callable, Measurement          engine.measure
    LatencyStats                           engine.stats
    evaluate_accuracy, AccuracyReport      engine.accuracy
    BenchmarkResult                        engine.result
    model_facts                            engine.facts
    compute_metrics                        engine.compute
    Stopwatch                              engine.timing
    Clock, FakeClock, PerfCounterClock     engine.clock
    resolve_device, synchronize, release_memory, is_out_of_memory   engine.device
    precision_settings, dtype_for          engine.precision
    environment_tags                       engine.environment
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlperf_track.lazy import lazy_exports

if TYPE_CHECKING:
    from mlperf_track.engine.accuracy import AccuracyReport, evaluate_accuracy
    from mlperf_track.engine.clock import Clock, FakeClock, PerfCounterClock
    from mlperf_track.engine.compute import compute_metrics
    from mlperf_track.engine.device import is_out_of_memory, release_memory, resolve_device, synchronize
    from mlperf_track.engine.environment import environment_tags
    from mlperf_track.engine.facts import model_facts
    from mlperf_track.engine.measure import Measurement, measure_callable
    from mlperf_track.engine.precision import dtype_for, precision_settings
    from mlperf_track.engine.result import BenchmarkResult
    from mlperf_track.engine.stats import LatencyStats
    from mlperf_track.engine.timing import Stopwatch

_EXPORTS = {
    "AccuracyReport": "accuracy",
    "BenchmarkResult": "result",
    "Clock": "clock",
    "FakeClock": "clock",
    "LatencyStats": "stats",
    "Measurement": "measure",
    "PerfCounterClock": "clock",
    "Stopwatch": "timing",
    "compute_metrics": "compute",
    "dtype_for": "precision",
    "environment_tags": "environment",
    "evaluate_accuracy": "accuracy",
    "is_out_of_memory": "device",
    "measure_callable": "measure",
    "model_facts": "facts",
    "precision_settings": "precision",
    "release_memory": "device",
    "resolve_device": "device",
    "synchronize": "device",
}

__all__ = [
    "AccuracyReport",
    "BenchmarkResult",
    "Clock",
    "FakeClock",
    "LatencyStats",
    "Measurement",
    "PerfCounterClock",
    "Stopwatch",
    "compute_metrics",
    "dtype_for",
    "environment_tags",
    "evaluate_accuracy",
    "is_out_of_memory",
    "measure_callable",
    "model_facts",
    "precision_settings",
    "release_memory",
    "resolve_device",
    "synchronize",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
