"""Runtimes on text models: token ids with dynamic batch and sequence axes, generation with both KV caches."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mlperf_track.errors import UnsupportedError
from mlperf_track.models.artifact import ModelArtifact, TokenInputs
from mlperf_track.models.registry import load_model
from mlperf_track.models.text import CausalLanguageModel, TokenClassifier
from mlperf_track.runtimes.base import PrepareRequest
from mlperf_track.runtimes.registry import get_runtime

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def encoder() -> ModelArtifact:
    loaded = load_model("hf-config:bert-tiny")
    module = TokenClassifier(loaded.module, 128, 5).eval()
    return ModelArtifact("bert-tiny", (32,), module, tokens=TokenInputs(loaded.text.vocab_size, 512, "encoder"))


@pytest.fixture(scope="module")
def decoder() -> ModelArtifact:
    loaded = load_model("hf-config:llama-tiny")
    module = CausalLanguageModel(loaded.module).eval()
    return ModelArtifact("llama-tiny", (12,), module, tokens=TokenInputs(loaded.text.vocab_size, 512, "decoder"))


def request(length: int, tmp: Path | None = None, **changes: object) -> PrepareRequest:
    values: dict[str, object] = {
        "device": "cpu",
        "precision": "fp32",
        "batch_sizes": (1, 3),
        "input_shape": (length,),
        "cache_dir": tmp,
        **changes,
    }
    return PrepareRequest(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("runtime", ["eager", "onnxruntime", "openvino"])
def test_encoders_take_token_ids_of_any_length_and_match_eager(
    runtime: str, encoder: ModelArtifact, tmp_path: Path
) -> None:
    if get_runtime(runtime).unavailable_reason():
        pytest.skip(get_runtime(runtime).unavailable_reason() or "")
    assert encoder.module is not None
    ids = torch.randint(0, 4096, (4, 20))
    with torch.inference_mode():
        expected = encoder.module(ids)
    for length in (16, 32):
        prepared = get_runtime(runtime).prepare(encoder, request(length, tmp_path))
        try:
            batch = prepared.make_input(3)
            assert tuple(batch.shape) == (3, length) and str(batch.dtype).endswith("int64")
            assert int(batch.max()) < 4096
            assert tuple(prepared(batch).shape) == (3, 5)
            assert torch.allclose(prepared.predict(ids), expected, atol=1e-4)  # another length than prepared
        finally:
            prepared.close()
    if runtime == "onnxruntime":
        assert len(list((tmp_path / "onnx").glob("*.onnx"))) == 1  # one export serves every length


def test_image_only_runtimes_refuse_text_models_in_one_line(encoder: ModelArtifact) -> None:
    with pytest.raises(UnsupportedError, match="tensorrt runtime runs image models, not tokens") as info:
        get_runtime("tensorrt").check_workload(encoder.workload)
    assert "\n" not in str(info.value)
    for name in ("onnxruntime", "openvino"):
        with pytest.raises(UnsupportedError, match="not generation"):
            get_runtime(name).check_workload("generation")


def test_dynamic_and_static_cache_generate_the_same_tokens(decoder: ModelArtifact) -> None:
    eager = get_runtime("eager").prepare(decoder, request(12, max_sequence=12 + 6))
    forward = get_runtime("eager").prepare(decoder, request(12, max_sequence=18, options={"decode_loop": "forward"}))
    static = get_runtime("compile").prepare(decoder, request(12, max_sequence=18))
    try:
        prompt = eager.make_input(3, seed=1)
        tokens = eager.generate_tokens(prompt, 6)  # type: ignore[attr-defined]
        assert tokens.shape == (3, 6)
        assert torch.equal(forward.generate_tokens(prompt, 6), tokens)  # type: ignore[attr-defined]
        assert torch.equal(static.generate_tokens(prompt, 6), tokens)  # type: ignore[attr-defined]
        assert static.tags["runtime.kv_cache"].startswith("static") and "runtime.inductor_cache" in static.tags
    finally:
        for prepared in (eager, forward, static):
            prepared.close()


def test_a_generation_run_reports_every_token_and_its_kv_cache(decoder: ModelArtifact) -> None:
    prepared = get_runtime("eager").prepare(decoder, request(12, max_sequence=20))
    try:
        seen: list[int] = []
        prepared.generation_run(prepared.make_input(2), 8)(lambda: seen.append(1))  # type: ignore[attr-defined]
        assert len(seen) == 8
        # 2 layers x (keys + values) x batch 2 x 2 KV heads x (12 + 8 - 1 cached positions) x head dim 32 x 4 bytes
        kv = prepared.kv_cache_bytes()  # type: ignore[attr-defined]
        assert kv is not None and kv == pytest.approx(2 * 2 * 2 * 2 * 19 * 32 * 4, rel=0.06)
        assert tuple(prepared.predict(torch.randint(0, 4096, (2, 5))).shape) == (2, 5, 4096)
    finally:
        prepared.close()
