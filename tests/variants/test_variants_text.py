"""Variants of text models: which recipes apply, weight-only quantization, and the shallow distilled student."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from mlperf_track.data.base import DatasetSplits
from mlperf_track.data.text import TextDataset
from mlperf_track.errors import ConfigError, UnsupportedError
from mlperf_track.models.artifact import ModelArtifact, TokenInputs
from mlperf_track.models.registry import load_model
from mlperf_track.models.text import CausalLanguageModel, hf_config_of
from mlperf_track.training.text import STOP_TIME_CAP
from mlperf_track.variants.base import VariantContext
from mlperf_track.variants.distill_text import keep_layers, transformer_blocks
from mlperf_track.variants.quantize_torchao import Int8WeightOnlyVariant, kernel_missing
from mlperf_track.variants.registry import get_variant, group_members, resolve_variants, variant_names
from mlperf_track.variants.text_baseline import prepare_text_baseline

pytest.importorskip("transformers")


def test_groups_leave_out_the_recipes_that_do_not_apply_to_text() -> None:
    image = {variant.name for variant in resolve_variants(["quantized", "distilled"], "cpu")}
    text = {variant.name for variant in resolve_variants(["quantized", "distilled"], "cpu", "generation")}
    assert "quantized_int8_pt2e" not in text and "distilled" not in text
    assert "quantized_int8_dynamic" in text and "distilled_shallow" in text
    assert "quantized_int8_weight_only" not in image and "distilled_shallow" not in image
    assert set(group_members("quantized")) >= {"quantized_int8_weight_only", "quantized_int4_weight_only"}


def test_a_recipe_named_for_the_wrong_kind_of_model_is_one_clear_error() -> None:
    with pytest.raises(UnsupportedError, match=r"quantized_int8_pt2e.*applies to image models, not generation"):
        resolve_variants(["quantized_int8_pt2e"], "cpu", "generation")
    with pytest.raises(UnsupportedError, match="not image"):
        resolve_variants(["distilled_shallow"], "cpu", "image")


def test_int4_weight_only_says_why_a_device_cannot_run_it() -> None:
    reason = get_variant("quantized_int4_weight_only").unavailable_reason("cpu")
    if reason is None:
        pytest.skip("this torchao has an int4 CPU kernel")
    assert "int4" in reason and "\n" not in reason


@pytest.fixture(scope="module")
def gpt2() -> ModelArtifact:
    loaded = load_model("hf-config:gpt2-tiny")
    return ModelArtifact(
        "gpt2-tiny", (16,), CausalLanguageModel(loaded.module).eval(), tokens=TokenInputs(4096, 512, "decoder")
    )


def context() -> VariantContext:
    return VariantContext(device="cpu", data=DatasetSplits(name="synthetic", image_size=16), image_size=16)


def test_int8_weight_only_quantizes_every_linear_and_keeps_the_outputs_close(gpt2: ModelArtifact) -> None:
    if kernel_missing(8, "cpu", torch.float32):
        pytest.skip(kernel_missing(8, "cpu", torch.float32) or "")
    artifact = Int8WeightOnlyVariant().build(gpt2, context())
    assert (artifact.precision, artifact.device, artifact.workload) == ("fp32", "cpu", "generation")
    assert int(artifact.tags["quant.quantized_layers"]) == 9  # 8 block projections and the head
    ids = torch.randint(0, 4096, (2, 16))
    assert gpt2.module is not None and artifact.module is not None
    with torch.inference_mode():
        reference, quantized = gpt2.module(ids), artifact.module(ids)
    assert (reference.argmax(-1) == quantized.argmax(-1)).float().mean() > 0.95


def test_keep_layers_thins_the_blocks_and_the_config(gpt2: ModelArtifact) -> None:
    import copy

    assert gpt2.module is not None
    student = copy.deepcopy(gpt2.module)
    assert keep_layers(student, 1) == [0]
    assert len(transformer_blocks(student)) == 1 and hf_config_of(student).n_layer == 1
    assert student(torch.randint(0, 4096, (1, 8))).shape == (1, 8, 4096)
    with pytest.raises(ConfigError, match="student_layers"):
        keep_layers(copy.deepcopy(gpt2.module), 2)


def lm_data() -> DatasetSplits:
    from torch.utils.data import TensorDataset

    from mlperf_track.data.text import TextDataset

    tokens = torch.randint(0, 4096, (24, 17), generator=torch.Generator().manual_seed(0))
    windows = TensorDataset(tokens[:, :-1], tokens[:, 1:])
    return TextDataset(name="windows", image_size=16, train=windows, val=windows, holdout=windows, kind="decoder")


@pytest.mark.parametrize("name", [name for name in variant_names() if "generation" in get_variant(name).workloads])
def test_every_text_recipe_builds_a_working_decoder(name: str, gpt2: ModelArtifact) -> None:
    variant = get_variant(name)
    if variant.unavailable_reason("cpu"):
        pytest.skip(variant.unavailable_reason("cpu") or "")
    options = {"train_max_steps": "2", "train_eval_every": "1"}
    artifact = variant.build(gpt2, VariantContext(device="cpu", data=lm_data(), image_size=16, options=options))
    assert artifact.tags["variant.recipe"] == name and artifact.workload == "generation"
    assert artifact.tokens == gpt2.tokens and artifact.module is not gpt2.module
    assert variant.pinned_precision is None or artifact.precision == variant.pinned_precision
    ids = torch.randint(0, 4096, (2, 16))
    assert artifact.module is not None and gpt2.module is not None
    with torch.inference_mode():
        logits = artifact.module(ids).float()
        reference = gpt2.module(ids)
    assert logits.shape == (2, 16, 4096)
    if name.startswith("quantized"):
        assert (logits.argmax(-1) == reference.argmax(-1)).float().mean() >= 0.9


@pytest.mark.parametrize("name", ["gpt2-tiny", "llama-tiny"])
def test_mlp_channel_pruning_halves_every_mlp_and_keeps_the_hidden_size(name: str) -> None:
    pytest.importorskip("torch_pruning")
    from mlperf_track.variants.prune_text import mlp_width, prune_mlp_channels

    module = CausalLanguageModel(load_model(f"hf-config:{name}").module).eval()
    hidden, width = mlp_width(module)
    before = sum(p.numel() for p in module.parameters())
    assert prune_mlp_channels(module, torch.randint(0, 4096, (1, 8)), 0.5) == width // 2
    assert mlp_width(module) == (hidden, width // 2)
    assert sum(p.numel() for p in module.parameters()) < before
    assert module(torch.randint(0, 4096, (2, 8))).shape == (2, 8, 4096)


def test_a_baseline_stopped_by_the_time_cap_says_so_and_how_to_retrain(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    loaded = load_model("hf-config:gpt2-tiny")
    tokens = torch.arange(8 * 17).remainder(50).view(8, 17)
    windows = TensorDataset(tokens[:, :-1], tokens[:, 1:])
    data = TextDataset(name="counting", image_size=16, train=windows, val=windows, holdout=windows)
    options = {"train_max_seconds": "0.000001", "train_eval_every": "1"}
    for cached in ("false", "true"):  # freshly trained, then read back from the cache: both warn
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="mlperf_track.variants.text_baseline"):
            prepared = prepare_text_baseline(loaded, data, device="cpu", seed=0, cache_dir=tmp_path, options=options)
        assert prepared.facts["baseline.stop_reason"] == STOP_TIME_CAP
        assert prepared.facts["baseline.cached"] == cached
        assert "time cap" in caplog.text and "delete" in caplog.text
