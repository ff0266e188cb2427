"""Hand-made results and a tiny model for the MLflow tests (imported by conftest and the tests)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from mlperf_track import metrics as m
from mlperf_track.engine.result import BenchmarkResult
from mlperf_track.spec import CaseSpec


def make_result(
    variant: str = "baseline",
    runtime: str = "eager",
    batch_size: int = 1,
    p50: float = 2.0,
    precision: str = "fp32",
) -> BenchmarkResult:
    """A result as the engine would produce it, with a note and a warning."""
    case = CaseSpec(
        model="tinycnn", variant=variant, runtime=runtime, precision=precision, batch_size=batch_size, image_size=8
    )
    samples = tuple(p50 + 0.1 * i for i in range(-2, 3))
    return BenchmarkResult(
        case=case,
        metrics={
            m.LATENCY_P50: p50,
            m.LATENCY_P99: p50 * 1.5,
            m.THROUGHPUT: batch_size * 1000.0 / p50,
            m.CPU_RSS_PEAK: 300.0 + batch_size,
            m.ACCURACY_TOP1: 0.9,
        },
        samples_ms=samples,
        tags={"precision.matmul": "highest", "timing.stop_reason": "max_time"},
        notes={m.GPU_PEAK_ALLOCATED: "no GPU on this machine"},
        warnings=("spread is high",),
    )


def tiny_module() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()


_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID")


@contextlib.contextmanager
def isolated_mlflow(uri: str, experiment: str, workdir: Path) -> Iterator[str]:
    """Use ``uri`` and a new experiment, then restore MLflow's globals and environment variables.

    ``mlflow.set_tracking_uri`` and ``mlflow.set_experiment`` also write ``MLFLOW_TRACKING_URI`` and
    ``MLFLOW_EXPERIMENT_ID`` into ``os.environ``; without this, other test modules would log into our store.
    """
    import mlflow
    from mlflow.tracking import fluent
    from mlflow.tracking._tracking_service import utils

    saved_env = {name: os.environ.get(name) for name in _ENV}
    saved_uri, saved_cwd = utils._tracking_uri, Path.cwd()
    os.environ["MLFLOW_TRACKING_URI"] = uri
    for name in _ENV[1:]:
        os.environ.pop(name, None)
    os.chdir(workdir)
    try:
        mlflow.set_tracking_uri(uri)
        yield mlflow.set_experiment(experiment).experiment_id
    finally:
        while mlflow.active_run() is not None:
            mlflow.end_run()
        mlflow.set_tracking_uri(saved_uri)  # type: ignore[arg-type]  # None unsets it (MLflow allows it)
        fluent._active_experiment_id = None
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        os.chdir(saved_cwd)
