"""--repeats: interleaved replicates merged into one result per case; --pin-cores: the process pinned, then freed."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from mlperf_track import metrics as m
from mlperf_track.errors import ConfigError
from mlperf_track.pipeline import CaseOutcome, PipelineConfig, PipelineListener, PipelineOutcome, run_pipeline
from mlperf_track.pipeline.affinity import affinity_of_all_threads
from mlperf_track.pipeline.session import BenchmarkSession
from mlperf_track.runtimes.eager import EagerRuntime
from mlperf_track.spec import CaseSpec, TimingConfig

FAST = TimingConfig(warmup_iters=2, warmup_s=0.0, min_iters=5, max_iters=30, max_time_s=0.3, target_rel_ci=0.05)


def tiny_config(tmp_path: Path, **overrides: object) -> PipelineConfig:
    values: dict[str, object] = {
        "model": "tinycnn",
        "device": "cpu",
        "batch_sizes": (1, 2),
        "image_size": 16,
        "timing": FAST,
        "cache_dir": tmp_path / "cache",
        "output_dir": tmp_path / "out",
        **overrides,
    }
    return PipelineConfig(**values)  # type: ignore[arg-type]


class Recorder(PipelineListener):
    """Every event as a string, and the final outcome."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.ended: PipelineOutcome | None = None

    def on_baseline_ready(self, artifact: object, facts: dict[str, str]) -> None:
        self.events.append("baseline")

    def on_pipeline_start(self, config: PipelineConfig, cases: list[CaseSpec]) -> None:
        self.events.append(f"start:{len(cases)}")

    def on_case_start(self, case: CaseSpec) -> None:
        self.events.append(f"case:{case.name}")

    def on_case_end(self, outcome: CaseOutcome) -> None:
        self.events.append(f"end:{outcome.case.name}:{'ok' if outcome.ok else 'failed'}")

    def on_pipeline_end(self, outcome: PipelineOutcome) -> None:
        self.events.append("finish")
        self.ended = outcome


def _spy_run_case(monkeypatch: pytest.MonkeyPatch, seen: list[CaseSpec], hook: object = None) -> None:
    real = BenchmarkSession.run_case

    def run_case(self: BenchmarkSession, case: CaseSpec, *, profile: bool = False) -> CaseOutcome:
        seen.append(case)
        if callable(hook):
            hook(len(seen))
        return real(self, case, profile=profile)

    monkeypatch.setattr(BenchmarkSession, "run_case", run_case)


def test_replicates_are_interleaved_merged_and_reported_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[CaseSpec] = []
    _spy_run_case(monkeypatch, seen)
    recorder = Recorder()
    outcome = run_pipeline(tiny_config(tmp_path, repeats=3), recorder)

    names = [case.name for case in seen]
    assert names == ["baseline-eager-fp32-bs1", "baseline-eager-fp32-bs2"] * 3  # A B A B A B
    assert recorder.events == [
        "baseline",
        "start:2",
        "case:baseline-eager-fp32-bs1",
        "end:baseline-eager-fp32-bs1:ok",
        "case:baseline-eager-fp32-bs2",
        "end:baseline-eager-fp32-bs2:ok",
        "finish",
    ]
    for case_outcome in outcome.outcomes:
        result = case_outcome.result
        assert result is not None and len(result.replicate_counts) == 3
        assert result.metrics[m.LATENCY_REPLICATE_COUNT] == 3 and m.LATENCY_P50_REPLICATE_CV in result.metrics
        assert result.metrics[m.LATENCY_COUNT] == len(result.samples_ms) == sum(result.replicate_counts)
        assert result.tags["engine.replicates"] == "3"
        with case_outcome.artifacts["samples.csv"].open() as handle:
            rows = list(csv.DictReader(handle))
        assert [int(row["replicate"]) for row in rows] == [
            number for number, count in enumerate(result.replicate_counts, start=1) for _ in range(count)
        ]
        saved = json.loads(case_outcome.artifacts["result.json"].read_text())
        assert saved["replicate_counts"] == list(result.replicate_counts)
        assert saved["valid"] == result.valid


def test_cpu_replicates_reuse_prepared_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prepared: list[str] = []
    real = EagerRuntime.prepare

    def prepare(self: EagerRuntime, artifact: object, request: object) -> object:
        prepared.append(getattr(request, "precision", "?"))
        return real(self, artifact, request)  # type: ignore[arg-type]

    monkeypatch.setattr(EagerRuntime, "prepare", prepare)
    config = tiny_config(tmp_path, repeats=2, precisions=("fp32", "bf16"), batch_sizes=(1,))
    outcome = run_pipeline(config)
    assert len(outcome.results) == 2 and sorted(prepared) == ["bf16", "fp32"]  # once each, not once per replicate
    for result in outcome.results:
        assert m.STARTUP_PREPARE in result.metrics and m.STARTUP_FIRST_INFERENCE in result.metrics  # round 1's


def test_a_failed_case_is_reported_once_and_not_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    seen: list[CaseSpec] = []
    _spy_run_case(monkeypatch, seen)
    config = tiny_config(
        tmp_path, repeats=2, runtimes=("eager", "onnxruntime"), precisions=("fp32", "bf16"), batch_sizes=(1,)
    )
    outcome = run_pipeline(config)
    failed = [o for o in outcome.outcomes if not o.ok]
    assert [o.case.name for o in failed] == ["baseline-onnxruntime-bf16-bs1"]
    assert [c.name for c in seen].count("baseline-onnxruntime-bf16-bs1") == 1
    assert all(len(o.result.replicate_counts) == 2 for o in outcome.outcomes if o.result is not None)


def test_interrupt_in_an_early_round_reports_what_ran(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupt(calls: int) -> None:
        if calls == 2:
            raise KeyboardInterrupt

    _spy_run_case(monkeypatch, [], interrupt)
    recorder = Recorder()
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(tiny_config(tmp_path, repeats=3), recorder)
    assert recorder.events[2:] == ["case:baseline-eager-fp32-bs1", "end:baseline-eager-fp32-bs1:ok", "finish"]
    assert recorder.ended is not None and recorder.ended.interrupted and len(recorder.ended.results) == 1


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux only")
def test_pin_cores_pins_every_thread_then_restores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    core = min(os.sched_getaffinity(0))
    before = affinity_of_all_threads()
    during: list[dict[int, set[int]]] = []
    _spy_run_case(monkeypatch, [], lambda _: during.append(affinity_of_all_threads()))
    outcome = run_pipeline(tiny_config(tmp_path, pin_cores=(core,), num_threads=1))
    assert during and all(set(cores) == {core} for snapshot in during for cores in snapshot.values())
    after = affinity_of_all_threads()
    assert all(after[tid] == cores for tid, cores in before.items() if tid in after)
    assert all(result.tags["engine.pinned_cores"] == str(core) for result in outcome.results)
    saved = json.loads(outcome.outcomes[0].artifacts["result.json"].read_text())
    assert saved["tags"]["engine.pinned_cores"] == str(core)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux only")
def test_pin_cores_refuses_a_core_the_process_cannot_use(tmp_path: Path) -> None:
    recorder = Recorder()
    missing = max(os.sched_getaffinity(0)) + 1000
    with pytest.raises(ConfigError, match=f"invalid pin_cores={missing}"):
        run_pipeline(tiny_config(tmp_path, pin_cores=(missing,)), recorder)
    assert recorder.events == []
