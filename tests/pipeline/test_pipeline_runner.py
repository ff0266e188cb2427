"""The pipeline end to end on a tiny model: results, files, failures that do not stop it, interrupts."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from mlperf_track import metrics as m
from mlperf_track.errors import ConfigError, DeviceError, UnsupportedError
from mlperf_track.pipeline import CaseOutcome, PipelineConfig, PipelineListener, PipelineOutcome, run_pipeline
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
    }
    values.update(overrides)
    return PipelineConfig(**values)  # type: ignore[arg-type]


class Recorder(PipelineListener):
    def __init__(self, interrupt_after: int | None = None) -> None:
        self.events: list[str] = []
        self.interrupt_after = interrupt_after
        self.ended: PipelineOutcome | None = None

    def on_baseline_ready(self, artifact: object, facts: dict[str, str]) -> None:
        self.events.append("baseline")

    def on_pipeline_start(self, config: PipelineConfig, cases: list[CaseSpec]) -> None:
        self.events.append(f"start:{len(cases)}")

    def on_case_start(self, case: CaseSpec) -> None:
        self.events.append(f"case:{case.name}")

    def on_case_end(self, outcome: CaseOutcome) -> None:
        self.events.append(f"end:{outcome.case.name}:{'ok' if outcome.ok else 'failed'}")
        if (
            self.interrupt_after is not None
            and len([e for e in self.events if e.startswith("end:")]) >= self.interrupt_after
        ):
            raise KeyboardInterrupt

    def on_pipeline_end(self, outcome: PipelineOutcome) -> None:
        self.events.append("finish")
        self.ended = outcome


def test_measures_every_case_and_writes_files(tmp_path: Path) -> None:
    recorder = Recorder()
    outcome = run_pipeline(tiny_config(tmp_path), recorder)

    assert [o.case.batch_size for o in outcome.outcomes] == [1, 2]
    assert not outcome.failures
    assert recorder.events[0] == "baseline" and recorder.events[1] == "start:2" and recorder.events[-1] == "finish"
    for case_outcome in outcome.outcomes:
        result = case_outcome.result
        assert result is not None
        for key in (
            m.LATENCY_P50,
            m.LATENCY_P99,
            m.THROUGHPUT,
            m.MODEL_PARAMS,
            m.MODEL_FLOPS,
            m.STARTUP_LOAD,
            m.STARTUP_PREPARE,
            m.CPU_RSS_PEAK,
        ):
            assert key in result.metrics, key
        assert m.GPU_PEAK_ALLOCATED not in result.metrics  # absent, never zero, on a CPU run
        with case_outcome.artifacts["samples.csv"].open() as handle:
            rows = list(csv.DictReader(handle))
        assert len(rows) == len(result.samples_ms) >= FAST.min_iters
        saved = json.loads(case_outcome.artifacts["result.json"].read_text())
        assert saved["metrics"][m.LATENCY_P50] == result.metrics[m.LATENCY_P50]
    first, second = outcome.results
    assert m.STARTUP_FIRST_INFERENCE in first.metrics
    assert m.STARTUP_FIRST_INFERENCE not in second.metrics and m.STARTUP_FIRST_INFERENCE in second.notes


def test_unsupported_case_fails_alone(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    config = tiny_config(tmp_path, runtimes=("eager", "onnxruntime"), precisions=("fp32", "bf16"), batch_sizes=(1,))
    outcome = run_pipeline(config)

    by_name = {(o.case.runtime, o.case.precision): o for o in outcome.outcomes}
    assert by_name[("eager", "fp32")].ok and by_name[("eager", "bf16")].ok and by_name[("onnxruntime", "fp32")].ok
    failed = by_name[("onnxruntime", "bf16")]
    assert isinstance(failed.error, UnsupportedError)
    assert "precision" in str(failed.error)


def test_accuracy_on_labelled_data(tmp_path: Path) -> None:
    outcome = run_pipeline(tiny_config(tmp_path, dataset="digits", image_size=8, epochs=1, batch_sizes=(4,)))
    result = outcome.results[0]
    assert 0.0 <= result.metrics[m.ACCURACY_TOP1] <= 1.0
    assert result.metrics[m.ACCURACY_AGREEMENT] == pytest.approx(1.0)
    assert result.metrics[m.ACCURACY_TOP1_DELTA] == pytest.approx(0.0, abs=1e-9)


def test_interrupt_keeps_finished_cases(tmp_path: Path) -> None:
    recorder = Recorder(interrupt_after=1)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(tiny_config(tmp_path), recorder)
    assert recorder.ended is not None and recorder.ended.interrupted
    assert len(recorder.ended.results) == 1
    assert recorder.events[-1] == "finish"


@pytest.mark.parametrize(
    ("overrides", "error", "parameter"),
    [
        ({"runtimes": ("warp-drive",)}, ConfigError, "runtime"),
        ({"precisions": ("tf32",)}, UnsupportedError, "precision"),
        ({"variants": ("shrunk",)}, ConfigError, "variant"),
    ],
)
def test_bad_input_fails_before_any_case(
    tmp_path: Path, overrides: dict[str, object], error: type, parameter: str
) -> None:
    recorder = Recorder()
    with pytest.raises(error) as raised:
        run_pipeline(tiny_config(tmp_path, **overrides), recorder)
    assert raised.value.parameter == parameter
    assert recorder.events == []


def test_cuda_without_gpu_is_a_device_error(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(DeviceError):
        run_pipeline(tiny_config(tmp_path, device="cuda"))


def test_an_option_no_selected_member_declares_is_refused_before_any_case(tmp_path: Path) -> None:
    """The Python API checks ``options`` as the CLI does: one line, before the baseline is built."""
    config = tiny_config(tmp_path, runtimes=("eager",), variants=(), options=(("compile_mode", "max-autotune"),))
    recorder = Recorder()
    with pytest.raises(ConfigError, match=r"compile_mode"):
        run_pipeline(config, recorder)
    assert recorder.events == []
    assert not (tmp_path / "cache").exists()
