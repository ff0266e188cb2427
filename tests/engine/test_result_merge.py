"""merge_results: replicates extended, statistics and validity recomputed, differing metadata dropped."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from mlperf_track import metrics as m
from mlperf_track.engine.clock import FakeClock
from mlperf_track.engine.measure import measure_callable
from mlperf_track.engine.result import BenchmarkResult, merge_results
from mlperf_track.engine.stats import LatencyStats
from mlperf_track.spec import CaseSpec, TimingConfig

CASE = CaseSpec(model="tiny", batch_size=2)
TIMING = TimingConfig(min_iters=10, target_rel_ci=0.05)


def _replicate(level: float, n: int = 60, seed: int = 0, **extra: float) -> BenchmarkResult:
    samples = tuple((level + np.random.default_rng(seed).normal(0, 0.02 * level, n)).tolist())
    stats = LatencyStats(samples)
    metrics = {**stats.as_dict(), m.THROUGHPUT: stats.throughput(CASE.batch_size), **extra}
    return BenchmarkResult(case=CASE, metrics=metrics, samples_ms=samples, tags={"engine.stop_reason": "ci_reached"})


def test_samples_extended_and_statistics_recomputed() -> None:
    parts = [_replicate(10.0, seed=1), _replicate(10.4, seed=2), _replicate(9.8, seed=3)]
    merged = merge_results(parts, TIMING)
    samples = [value for part in parts for value in part.samples_ms]
    assert merged.samples_ms == tuple(samples) and merged.replicate_counts == (60, 60, 60)
    assert merged.metrics[m.LATENCY_P50] == pytest.approx(np.median(samples))
    assert merged.metrics[m.LATENCY_COUNT] == 180
    assert merged.metrics[m.THROUGHPUT] == pytest.approx(2 * 180 / (sum(samples) / 1e3))
    p50s = [statistics.median(part.samples_ms) for part in parts]
    assert merged.metrics[m.LATENCY_P50_REPLICATE_CV] == pytest.approx(statistics.stdev(p50s) / statistics.mean(p50s))
    assert merged.metrics[m.LATENCY_REPLICATE_COUNT] == 3
    assert merged.tags["engine.replicates"] == "3" and merged.tags["engine.throughput_method"] == "per_call"
    assert [list(r) for r in merged.replicates] == [list(p.samples_ms) for p in parts]


def test_merging_merged_results_keeps_every_replicate() -> None:
    first = merge_results([_replicate(10.0, seed=1), _replicate(10.1, seed=2)], TIMING)
    again = merge_results([first, _replicate(10.2, seed=3)], TIMING)
    assert again.replicate_counts == (60, 60, 60) and again.metrics[m.LATENCY_REPLICATE_COUNT] == 3


def test_validity_is_recomputed_on_the_merged_data() -> None:
    short = TimingConfig(min_iters=100, target_rel_ci=0.05)
    parts = [_replicate(10.0, n=60, seed=1), _replicate(10.0, n=60, seed=2)]
    assert all(not part.valid for part in [merge_results([p], short) for p in parts])  # 60 < min_iters
    assert merge_results(parts, short).valid  # 120 samples together
    drifted = merge_results([_replicate(10.0, seed=1), _replicate(10.5, seed=2), _replicate(12.0, seed=3)], TIMING)
    assert any(reason.startswith("not stable") for reason in drifted.invalid_reasons)  # replicates disagree


def test_metadata_rules() -> None:
    a = _replicate(10.0, seed=1, **{m.MODEL_PARAMS: 5.0, m.CPU_RSS_PEAK: 100.0, m.STARTUP_PREPARE: 3.0})
    b = _replicate(10.0, seed=2, **{m.MODEL_PARAMS: 5.0, m.CPU_RSS_PEAK: 120.0, m.STARTUP_PREPARE: 0.1})
    a = a.with_metrics({m.CPU_UTILIZATION: 95.0, m.STARTUP_FIRST_INFERENCE: 40.0}).with_tags({"hw.cpu": "x"})
    b = b.with_metrics({m.CPU_UTILIZATION: 99.0}, {m.STARTUP_FIRST_INFERENCE: "already called"})
    b = b.with_tags({"hw.cpu": "x", "engine.stop_reason": "max_time"})
    merged = merge_results([a, b], TIMING)
    assert merged.metrics[m.MODEL_PARAMS] == 5.0  # equal: kept
    assert merged.metrics[m.CPU_RSS_PEAK] == 120.0  # a peak: the largest
    assert merged.metrics[m.STARTUP_PREPARE] == 3.0 and merged.metrics[m.STARTUP_FIRST_INFERENCE] == 40.0  # cold
    assert m.CPU_UTILIZATION not in merged.metrics and "differs between replicates" in merged.notes[m.CPU_UTILIZATION]
    assert m.STARTUP_FIRST_INFERENCE not in merged.notes
    assert merged.tags["hw.cpu"] == "x" and "engine.stop_reason" not in merged.tags
    assert merged.tags["engine.replicate_stop_reasons"] == "ci_reached,max_time"


def test_throughput_proportional_metrics_follow_the_merged_throughput() -> None:
    a, b = _replicate(10.0, seed=1), _replicate(11.0, seed=2)
    a = a.with_metrics({m.ACHIEVED_TFLOPS: a.metrics[m.THROUGHPUT] * 1e-3})
    b = b.with_metrics({m.ACHIEVED_TFLOPS: b.metrics[m.THROUGHPUT] * 1e-3})
    merged = merge_results([a, b], TIMING)
    assert merged.metrics[m.ACHIEVED_TFLOPS] == pytest.approx(merged.metrics[m.THROUGHPUT] * 1e-3)


def test_blocks_of_different_sizes_are_normalised() -> None:
    a = BenchmarkResult(case=CASE, samples_ms=(2.0,) * 20, blocks=((10, 10.0), (10, 10.0)))
    b = BenchmarkResult(case=CASE, samples_ms=(2.0,) * 20, blocks=((40, 80.0),))
    merged = merge_results([a, b], TIMING)
    assert merged.metrics[m.THROUGHPUT] == pytest.approx(2 * 60 / 0.1)
    assert merged.tags["engine.throughput_method"] == "block:10/40"
    mixed = merge_results([a, BenchmarkResult(case=CASE, samples_ms=(2.0,) * 20)], TIMING)
    assert mixed.blocks == () and mixed.tags["engine.throughput_method"] == "per_call"


def test_refuses_different_cases_and_nothing() -> None:
    other = BenchmarkResult(case=CaseSpec(model="tiny", batch_size=4), samples_ms=(1.0,) * 10)
    with pytest.raises(ValueError, match="different cases"):
        merge_results([_replicate(10.0), other], TIMING)
    with pytest.raises(ValueError, match="at least one"):
        merge_results([], TIMING)


def test_json_round_trip_and_replicate_count_check() -> None:
    merged = merge_results([_replicate(10.0, seed=1), _replicate(10.0, seed=2)], TIMING)
    again = BenchmarkResult.from_dict(merged.to_dict())
    assert again.replicate_counts == merged.replicate_counts and again.invalid_reasons == merged.invalid_reasons
    with pytest.raises(ValueError, match="do not add up"):
        BenchmarkResult(case=CASE, samples_ms=(1.0, 2.0), replicate_counts=(1, 2))


def test_merge_of_real_measurements() -> None:
    clock = FakeClock()
    rng = np.random.default_rng(4)

    def call() -> None:
        clock.advance(float(rng.normal(5e-3, 5e-5)))

    timing = TimingConfig(warmup_iters=1, warmup_s=0, min_iters=10, target_rel_ci=0.02)
    case = CaseSpec(model="tiny", batch_size=1)
    parts = [
        measure_callable(call, device="cpu", batch_size=1, timing=timing, monitors=False, clock=clock).to_result(case)
        for _ in range(3)
    ]
    merged = merge_results(parts, timing)
    assert merged.valid and merged.metrics[m.LATENCY_COUNT] == sum(len(p.samples_ms) for p in parts)
