"""A session keeps retrained variants in its cache directory: the next session loads them instead of training."""

from __future__ import annotations

from pathlib import Path

from mlperf_track import metrics
from mlperf_track.pipeline.config import PipelineConfig
from mlperf_track.pipeline.session import BenchmarkSession
from mlperf_track.spec import TimingConfig

FAST = TimingConfig(warmup_iters=1, warmup_s=0.0, min_iters=3, max_iters=20, max_time_s=0.1, target_rel_ci=0.5)


def test_second_session_loads_the_pruned_variant_from_the_cache(tmp_path: Path) -> None:
    config = PipelineConfig(
        model="tinycnn",
        device="cpu",
        batch_sizes=(1,),
        image_size=16,
        dataset="digits",
        epochs=1,
        variants=("pruned_unstructured",),
        runtimes=("eager",),
        timing=FAST,
        cache_dir=tmp_path / "cache",
        output_dir=tmp_path / "out",
    )
    first = BenchmarkSession(config).variant("pruned_unstructured")
    second = BenchmarkSession(config).variant("pruned_unstructured")
    assert first.tags[metrics.VARIANT_CACHED_TAG] == "false"
    assert second.tags[metrics.VARIANT_CACHED_TAG] == "true"
    assert second.tags["variant.train_s"] == first.tags["variant.train_s"]
    assert list((tmp_path / "cache" / "variants").glob("tinycnn-pruned_unstructured-*.pt"))
