"""Text models through the whole pipeline: sweeps, generation metrics, quality, and bad lengths refused up front."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlperf_track import metrics as m
from mlperf_track.errors import ConfigError, UnsupportedError
from mlperf_track.pipeline.config import PipelineConfig
from mlperf_track.pipeline.runner import run_pipeline
from mlperf_track.pipeline.session import BenchmarkSession
from mlperf_track.spec import TimingConfig

pytest.importorskip("transformers")

FAST = TimingConfig(warmup_iters=1, warmup_s=0.0, min_iters=3, max_time_s=0.2, target_rel_ci=0.5)
TRAIN = (("train_max_steps", "4"), ("train_eval_every", "2"), ("train_max_seconds", "30"))


def config(tmp_path: Path, model: str, **changes: object) -> PipelineConfig:
    values: dict[str, object] = {
        "model": model,
        "device": "cpu",
        "batch_sizes": (1, 2),
        "timing": FAST,
        "cache_dir": tmp_path / "cache",
        "output_dir": tmp_path / "out",
        "options": TRAIN,
        **changes,
    }
    return PipelineConfig(**values)  # type: ignore[arg-type]


def test_an_encoder_is_measured_per_sequence_length_and_batch_with_accuracy(tmp_path: Path) -> None:
    outcome = run_pipeline(config(tmp_path, "hf-config:bert-tiny", dataset="auto", seq_lens=(16, 32)))
    assert not outcome.failures
    cases = {(result.case.seq_len, result.case.batch_size): result for result in outcome.results}
    assert set(cases) == {(16, 1), (16, 2), (32, 1), (32, 2)}
    result = cases[(32, 2)]
    assert result.metrics[m.TOKENS_PER_S] == pytest.approx(result.metrics[m.THROUGHPUT] * 32)
    assert result.metrics[m.LATENCY_P50_PER_TOKEN] == pytest.approx(result.metrics[m.LATENCY_P50] / 64)
    assert 0 <= result.metrics[m.ACCURACY_TOP1] <= 1 and result.metrics[m.ACCURACY_TOP1_DELTA] == 0
    assert cases[(32, 1)].metrics[m.MODEL_FLOPS] == pytest.approx(2 * cases[(16, 1)].metrics[m.MODEL_FLOPS], rel=0.1)
    assert result.case.params()["seq_len"] == "32" and "seq32" in result.case.name


def test_a_decoder_reports_generation_metrics_and_perplexity_for_every_variant(tmp_path: Path) -> None:
    outcome = run_pipeline(
        config(
            tmp_path,
            "hf-config:gpt2-tiny",
            dataset="auto",
            variants=("quantized_int8_dynamic",),
            prompt_lens=(8,),
            output_lens=(4,),
            batch_sizes=(2,),
        )
    )
    assert not outcome.failures
    assert {result.case.variant for result in outcome.results} == {"baseline", "quantized_int8_dynamic"}
    for result in outcome.results:
        metrics = result.metrics
        for key in (m.TTFT_P50, m.TPOT_P50, m.TPOT_P99, m.TOKENS_PER_S, m.KV_CACHE, m.ACCURACY_PERPLEXITY):
            assert key in metrics, (result.case.name, key)
        assert metrics[m.TOKENS_PER_S] == pytest.approx(metrics[m.THROUGHPUT] * 4)
        assert m.MODEL_FLOPS in result.notes and (result.case.prompt_len, result.case.output_len) == (8, 4)
    quantized = next(r for r in outcome.results if r.case.variant != "baseline")
    assert m.ACCURACY_PERPLEXITY_DELTA_CI_LOW in quantized.metrics
    assert 0.5 < quantized.metrics[m.ACCURACY_NEXT_TOKEN_AGREEMENT] <= 1
    low, high = (
        quantized.metrics[m.ACCURACY_NEXT_TOKEN_TOP1_DELTA_CI_LOW],
        quantized.metrics[m.ACCURACY_NEXT_TOKEN_TOP1_DELTA_CI_HIGH],
    )
    assert low <= quantized.metrics[m.ACCURACY_NEXT_TOKEN_TOP1_DELTA] <= high


def test_synthetic_data_measures_speed_without_training_or_quality(tmp_path: Path) -> None:
    outcome = run_pipeline(
        config(
            tmp_path, "hf-config:llama-tiny", dataset="synthetic", prompt_lens=(4,), output_lens=(2,), batch_sizes=(1,)
        )
    )
    (result,) = outcome.results
    assert m.ACCURACY_PERPLEXITY not in result.metrics and m.TTFT_P50 in result.metrics


@pytest.mark.parametrize(
    ("model", "changes", "match"),
    [
        ("hf-config:bert-tiny", {"seq_lens": (32, 1024)}, r"invalid seq_len=1024: allowed is at most 512"),
        ("hf-config:gpt2-tiny", {"prompt_lens": (512,)}, r"invalid prompt_len=512: allowed is below 512"),
        (
            "hf-config:gpt2-tiny",
            {"prompt_lens": (500,), "output_lens": (64,)},
            r"invalid output_len=64: allowed is at most 12",
        ),
        ("hf-config:gpt2-tiny", {"dataset": "digits"}, r"invalid dataset='digits'"),
    ],
)
def test_bad_lengths_fail_before_any_training(
    tmp_path: Path, model: str, changes: dict[str, object], match: str
) -> None:
    with (
        pytest.raises(ConfigError, match=match) as info,
        BenchmarkSession(config(tmp_path, model, **changes)) as session,
    ):
        session.baseline()
    assert "\n" not in str(info.value)
    assert not (tmp_path / "cache" / "baselines").exists()


def test_an_output_length_of_zero_is_refused_by_the_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid output_len=0"):
        config(tmp_path, "hf-config:gpt2-tiny", output_lens=(0,))


def test_a_decoder_with_only_runtimes_that_cannot_generate_is_refused(tmp_path: Path) -> None:
    bad = config(tmp_path, "hf-config:gpt2-tiny", runtimes=("onnxruntime",))
    with pytest.raises(UnsupportedError, match="none runs a text decoder"), BenchmarkSession(bad) as session:
        session.baseline()
