"""Hand-made results and a tiny model for the MLflow tests (imported by conftest and the tests)."""

from __future__ import annotations

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
