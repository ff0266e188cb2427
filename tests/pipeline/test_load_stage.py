"""The pipeline's load stage: the picked case, a variant served from the session's own artifact, no pick."""

from __future__ import annotations

from pathlib import Path

from mlperf_track import metrics as m
from mlperf_track.engine.load.config import DeploymentConfig, LoadConfig
from mlperf_track.engine.result import BenchmarkResult
from mlperf_track.pipeline import PipelineConfig, run_pipeline
from mlperf_track.pipeline.events import CaseOutcome, PipelineOutcome
from mlperf_track.pipeline.load_stage import LoadStage, fastest_valid_case
from mlperf_track.pipeline.load_sweep import LoadListener, LoadPoint
from mlperf_track.spec import CaseSpec, TimingConfig

FAST = TimingConfig(warmup_iters=2, warmup_s=0.0, min_iters=5, max_iters=30, max_time_s=0.3, target_rel_ci=0.05)
OFFLINE = LoadConfig("offline", min_duration_s=0.0, min_query_count=64)


def tiny_config(tmp_path: Path, **overrides: object) -> PipelineConfig:
    values: dict[str, object] = {
        "model": "tinycnn", "device": "cpu", "image_size": 16, "timing": FAST, "dataset": "synthetic",
        "measure_accuracy": False, "cache_dir": tmp_path / "cache", "output_dir": tmp_path / "out",
    }  # fmt: skip
    values.update(overrides)
    return PipelineConfig(**values)  # type: ignore[arg-type]


class _Recorder(LoadListener):
    def __init__(self) -> None:
        self.points: list[LoadPoint] = []

    def point_finished(self, point: LoadPoint) -> None:
        self.points.append(point)


def _pick_variant(outcome: PipelineOutcome) -> CaseSpec | None:
    return next(item.case for item in outcome.outcomes if item.case.variant != "baseline" and item.result is not None)


def test_the_picked_variant_is_served_from_the_session(tmp_path: Path) -> None:
    recorder = _Recorder()
    stage = LoadStage(OFFLINE, DeploymentConfig(max_batch_size=4), pick=_pick_variant, listener=recorder)
    config = tiny_config(tmp_path, runtimes=("eager",), variants=("quantized_int8_dynamic",), batch_sizes=(1,))
    outcome = run_pipeline(config, load=stage)
    assert len(outcome.outcomes) == 2  # the cases are measured as without a stage
    assert outcome.load is not None and [point.label for point in recorder.points] == ["offline"]
    result = outcome.load.results[0]
    assert result.tags["load.variant"] == "quantized_int8_dynamic"
    assert result.metrics[m.LOAD_COMPLETED] > 0 and result.metrics[m.LOAD_BATCH_SIZE_MEAN] > 1


def test_no_case_to_serve_leaves_no_sweep(tmp_path: Path) -> None:
    stage = LoadStage(OFFLINE, pick=lambda outcome: None)
    outcome = run_pipeline(tiny_config(tmp_path, runtimes=("eager",), batch_sizes=(1,)), load=stage)
    assert outcome.outcomes and outcome.load is None


def test_the_default_pick_is_the_fastest_valid_case(tmp_path: Path) -> None:
    outcome = run_pipeline(tiny_config(tmp_path, runtimes=("eager",), batch_sizes=(1, 2)))
    valid = [item for item in outcome.outcomes if item.result is not None and item.result.valid]
    picked = fastest_valid_case(outcome)
    if not valid:  # a loaded machine can leave every measurement invalid: then nothing qualifies
        assert picked is None
        return
    best = max(valid, key=lambda item: item.result.metrics[m.THROUGHPUT] if item.result else 0.0)
    assert picked == best.case


def _measured(variant: str, throughput: float, delta: float | None, *, valid: bool = True) -> CaseOutcome:
    case = CaseSpec("tinycnn", variant=variant, precision="fp32" if variant == "baseline" else "int8")
    metrics = {m.THROUGHPUT: throughput, m.LATENCY_P50: 1000.0 / throughput}
    if delta is not None:  # a drop whose 95% CI excludes 0: a measurable change
        metrics |= {m.ACCURACY_TOP1_DELTA: delta, m.ACCURACY_TOP1_DELTA_CI_LOW: delta - 0.01}
        metrics[m.ACCURACY_TOP1_DELTA_CI_HIGH] = delta + 0.005
    invalid = () if valid else ("the time cap ended the run before the CI target",)
    return CaseOutcome(case, result=BenchmarkResult(case, metrics, invalid_reasons=invalid))


def test_the_default_pick_follows_the_eligibility_rule(tmp_path: Path) -> None:
    outcomes = [
        _measured("baseline", 100.0, None),
        _measured("quantized_int8_dynamic", 300.0, -0.05),  # fastest, 5 points below the baseline
        _measured("pruned_unstructured", 400.0, 0.0, valid=False),  # fastest of all, an invalid measurement
        CaseOutcome(CaseSpec("tinycnn", variant="distilled"), error=RuntimeError("failed to build")),
    ]
    within_one_point = PipelineOutcome(tiny_config(tmp_path, max_accuracy_drop=0.01), outcomes)
    no_limit = PipelineOutcome(tiny_config(tmp_path, max_accuracy_drop=None), outcomes)
    picked = fastest_valid_case(within_one_point)
    assert picked is not None and picked.variant == "baseline"
    picked = fastest_valid_case(no_limit)
    assert picked is not None and picked.variant == "quantized_int8_dynamic"
    assert fastest_valid_case(PipelineOutcome(tiny_config(tmp_path), outcomes[2:])) is None
