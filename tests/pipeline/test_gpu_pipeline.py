"""On a real GPU: half-precision variants run on the device, and memory is measured per case (gpu marker)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mlperf_track import metrics as m
from mlperf_track.pipeline import PipelineConfig
from mlperf_track.pipeline.session import BenchmarkSession
from mlperf_track.spec import TimingConfig

pytestmark = pytest.mark.gpu

FAST = TimingConfig(warmup_iters=3, warmup_s=0.0, min_iters=10, max_iters=200, max_time_s=0.5, target_rel_ci=0.05)


def _config(tmp_path: Path, **overrides: object) -> PipelineConfig:
    values: dict[str, object] = {
        "model": "tinycnn",
        "device": "cuda",
        "image_size": 32,
        "dataset": "synthetic",
        "epochs": 0,
        "timing": FAST,
        "cache_dir": tmp_path / "cache",
        "output_dir": tmp_path / "out",
    }
    values.update(overrides)
    return PipelineConfig(**values)  # type: ignore[arg-type]


def test_half_precision_variants_run_on_the_gpu(tmp_path: Path) -> None:
    variants = ["quantized_fp16"] + (["quantized_bf16"] if torch.cuda.is_bf16_supported() else [])
    session = BenchmarkSession(
        _config(tmp_path, variants=tuple(variants), runtimes=("eager", "compile"), batch_sizes=(4,), channels_last=True)
    )
    with session:
        cases = [case for case in session.plan() if case.variant != "baseline"]
        assert {case.variant for case in cases} == set(variants)
        for case in cases:
            outcome = session.run_case(case)
            assert outcome.result is not None, f"{case.name}: {outcome.error}"
            metrics, tags = outcome.result.metrics, outcome.result.tags
            assert tags["runtime.channels_last"] == "true" and case.channels_last
            assert m.GPU_PREPARE_PEAK in metrics and metrics[m.GPU_PEAK_ALLOCATED] > 0
            assert (m.GPU_DEVICE_DELTA_PEAK in metrics) != (m.GPU_DEVICE_DELTA_PEAK in outcome.result.notes)


def test_batch_1_never_carries_the_blocks_of_a_larger_batch(tmp_path: Path) -> None:
    session = BenchmarkSession(_config(tmp_path, image_size=96, batch_sizes=(256, 1)))
    with session:
        results = {}
        for case in session.plan():
            outcome = session.run_case(case)
            assert outcome.result is not None, outcome.error
            results[case.batch_size] = outcome.result.metrics
    assert results[1][m.GPU_PEAK_RESERVED] < results[256][m.GPU_PEAK_RESERVED] / 4
    # the preparation (warm-up over both batch sizes) is reported apart, the same for both cases
    assert results[1][m.GPU_PREPARE_PEAK] == results[256][m.GPU_PREPARE_PEAK]
    assert results[1][m.GPU_PREPARE_PEAK] >= results[256][m.GPU_PEAK_ALLOCATED]
