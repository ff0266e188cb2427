"""What the session plans and records per case: precisions that need a quantized model, channels-last only where
honoured, the model's size at the case's precision, and the pinned cuDNN autotuning flag."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mlperf_track import metrics as m
from mlperf_track.engine.facts import state_dict_bytes
from mlperf_track.errors import UnsupportedError
from mlperf_track.pipeline import PipelineConfig
from mlperf_track.pipeline.session import BenchmarkSession
from mlperf_track.spec import TimingConfig

FAST = TimingConfig(warmup_iters=2, warmup_s=0.0, min_iters=5, max_iters=30, max_time_s=0.2, target_rel_ci=0.05)


def config(tmp_path: Path, **overrides: object) -> PipelineConfig:
    values: dict[str, object] = {
        "model": "tinycnn",
        "device": "cpu",
        "batch_sizes": (2,),
        "image_size": 16,
        "timing": FAST,
        "dataset": "synthetic",
        "epochs": 0,
        "cache_dir": tmp_path / "cache",
        "output_dir": tmp_path / "out",
    }
    values.update(overrides)
    return PipelineConfig(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("precision", ["int8", "fp8"])
def test_a_quantized_precision_without_a_variant_producing_it_is_refused_up_front(
    tmp_path: Path, precision: str
) -> None:
    with pytest.raises(UnsupportedError, match=rf"{precision}.*none of the requested variants") as raised:
        BenchmarkSession(config(tmp_path, precisions=("fp32", precision), runtimes=("eager", "onnxruntime")))
    assert "\n" not in str(raised.value)  # one line


def test_with_a_variant_producing_int8_only_that_variant_runs_int8(tmp_path: Path) -> None:
    session = BenchmarkSession(
        config(tmp_path, precisions=("fp32", "int8"), variants=("quantized_int8_dynamic",), epochs=0)
    )
    with session:
        plan = [(case.variant, case.precision) for case in session.plan()]
    assert ("baseline", "fp32") in plan and ("quantized_int8_dynamic", "int8") in plan
    assert ("baseline", "int8") not in plan  # the baseline cannot run int8: never planned to fail


def test_the_tuner_is_never_offered_int8_for_a_model_not_quantized_in_it(tmp_path: Path) -> None:
    session = BenchmarkSession(
        config(tmp_path, precisions=("fp32", "int8"), variants=("quantized_int8_dynamic",), epochs=0)
    )
    with session:
        assert "not one" in str(session.unsupported_reason("baseline", "eager", "int8"))
        assert session.unsupported_reason("quantized_int8_dynamic", "eager", "int8") is None
        assert session.unsupported_reason("baseline", "eager", "fp32") is None


def test_channels_last_is_planned_only_where_the_runtime_honours_it(tmp_path: Path) -> None:
    session = BenchmarkSession(
        config(tmp_path, channels_last=True, runtimes=("eager", "onnxruntime"), variants=("quantized_int8_dynamic",))
    )
    with session:
        flags = {(case.variant, case.runtime): case.channels_last for case in session.plan()}
    assert flags[("baseline", "eager")] is True
    assert flags[("baseline", "onnxruntime")] is False  # onnxruntime ignores it: never logged as true
    assert flags[("quantized_int8_dynamic", "eager")] is False  # an int8 artifact keeps its own layout


def test_size_follows_the_case_precision_and_cudnn_autotuning_is_tagged(tmp_path: Path) -> None:
    session = BenchmarkSession(config(tmp_path, precisions=("fp32", "bf16"), options=(("cudnn_benchmark", "true"),)))
    with session:
        results = {}
        for case in session.plan():
            outcome = session.run_case(case)
            assert outcome.result is not None, outcome.error
            results[case.precision] = outcome.result
            assert session.prepared_model(case) is not None
    fp32, bf16 = results["fp32"].metrics[m.MODEL_SIZE], results["bf16"].metrics[m.MODEL_SIZE]
    module = session.baseline().module
    assert module is not None
    assert fp32 == state_dict_bytes(module) / 2**20  # MiB of the weights as the case holds them
    assert bf16 == state_dict_bytes(module, torch.bfloat16) / 2**20
    assert bf16 < 0.6 * fp32  # half the bytes per weight, plus the same pickle framing
    assert results["fp32"].tags["precision.cudnn_benchmark"] == "true"
    for result in results.values():  # CPU cases: no GPU memory keys, and no notes claiming them either
        assert m.GPU_PREPARE_PEAK not in result.metrics and m.GPU_PREPARE_PEAK not in result.notes


def test_a_bad_cudnn_benchmark_value_is_one_clear_error(tmp_path: Path) -> None:
    session = BenchmarkSession(config(tmp_path, options=(("cudnn_benchmark", "sometimes"),)))
    with session:
        outcome = session.run_case(session.plan()[0])
    assert outcome.error is not None and "cudnn_benchmark" in str(outcome.error) and "sometimes" in str(outcome.error)
