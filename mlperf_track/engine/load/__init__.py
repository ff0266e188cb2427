"""Latency under load: MLPerf LoadGen scenarios against a modelled deployment (queue, workers, dynamic batching).

Never imports mlflow or optuna. Public surface (imported lazily)::

    run_load, warm_up                                  engine.load.run
    LoadConfig, DeploymentConfig, SCENARIOS            engine.load.config
    LoadResult                                         engine.load.result
    find_max_qps, SearchConfig, SearchOutcome, Probe   engine.load.search
    SyntheticModel, no_op, md1_mean_queue_delay        engine.load.synthetic
    simulate                                           engine.load.simulate
    run_threaded                                       engine.load.threaded
    HttpInference, RequestError, check_local_url      engine.load.http
    ResourceLimits, constrained, BackgroundLoad        engine.load.resources
    run_isolated                                       engine.load.isolated
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlperf_track.lazy import lazy_exports

if TYPE_CHECKING:
    from mlperf_track.engine.load.background import BackgroundLoad
    from mlperf_track.engine.load.config import SCENARIOS, DeploymentConfig, LoadConfig
    from mlperf_track.engine.load.http import HttpInference, RequestError, check_local_url
    from mlperf_track.engine.load.isolated import run_isolated
    from mlperf_track.engine.load.resources import ResourceLimits, constrained
    from mlperf_track.engine.load.result import LoadResult
    from mlperf_track.engine.load.run import run_load, warm_up
    from mlperf_track.engine.load.search import Probe, SearchConfig, SearchOutcome, find_max_qps
    from mlperf_track.engine.load.simulate import simulate
    from mlperf_track.engine.load.synthetic import SyntheticModel, md1_mean_queue_delay, no_op
    from mlperf_track.engine.load.threaded import run_threaded

_EXPORTS = {
    "BackgroundLoad": "background",
    "DeploymentConfig": "config",
    "HttpInference": "http",
    "LoadConfig": "config",
    "LoadResult": "result",
    "Probe": "search",
    "RequestError": "http",
    "ResourceLimits": "resources",
    "SCENARIOS": "config",
    "SearchConfig": "search",
    "SearchOutcome": "search",
    "SyntheticModel": "synthetic",
    "check_local_url": "http",
    "constrained": "resources",
    "find_max_qps": "search",
    "md1_mean_queue_delay": "synthetic",
    "no_op": "synthetic",
    "run_isolated": "isolated",
    "run_load": "run",
    "run_threaded": "threaded",
    "simulate": "simulate",
    "warm_up": "run",
}

__all__ = [
    "SCENARIOS",
    "BackgroundLoad",
    "DeploymentConfig",
    "HttpInference",
    "LoadConfig",
    "LoadResult",
    "Probe",
    "RequestError",
    "ResourceLimits",
    "SearchConfig",
    "SearchOutcome",
    "SyntheticModel",
    "check_local_url",
    "constrained",
    "find_max_qps",
    "md1_mean_queue_delay",
    "no_op",
    "run_isolated",
    "run_load",
    "run_threaded",
    "simulate",
    "warm_up",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
