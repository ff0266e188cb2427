"""Pruning recipes: real sparsity, physically fewer channels, and the ratio option's validation."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from mlperf_track.data.base import DatasetSplits
from mlperf_track.errors import ConfigError
from mlperf_track.models.artifact import ModelArtifact
from mlperf_track.variants.base import VariantContext
from mlperf_track.variants.registry import get_variant


def _convs(module: nn.Module) -> list[nn.Conv2d]:
    return [layer for layer in module.modules() if isinstance(layer, nn.Conv2d)]


def _params(module: nn.Module) -> int:
    return sum(param.numel() for param in module.parameters())


def test_unstructured_zeroes_half_the_weights_and_keeps_them_zero(
    built_variants: Callable[[str], ModelArtifact], tiny_baseline: ModelArtifact
) -> None:
    artifact = built_variants("pruned_unstructured")
    module = artifact.module
    assert module is not None and tiny_baseline.module is not None
    weights = [layer.weight for layer in _convs(module)]
    zeros = sum(int((weight == 0).sum()) for weight in weights)
    total = sum(weight.numel() for weight in weights)
    # The recovery fine-tune ran through the masks, so the pruned half is still exactly zero.
    assert artifact.tags["prune.fine_tune"].startswith("1 epoch")
    assert zeros / total == pytest.approx(0.5, abs=0.01)
    assert float(artifact.tags["prune.weight_sparsity"]) == pytest.approx(zeros / total, abs=1e-3)
    assert not any(name.endswith("_orig") for name, _ in module.named_parameters())  # prune.remove ran
    assert not any(layer._forward_pre_hooks for layer in module.modules())
    assert int((module.fc.weight == 0).sum()) == 0  # type: ignore[union-attr]  # head left whole
    assert _params(module) == _params(tiny_baseline.module)  # dense storage: same size
    assert "none expected" in artifact.tags["prune.speedup"]


def test_structured_removes_channels(
    built_variants: Callable[[str], ModelArtifact], tiny_baseline: ModelArtifact
) -> None:
    artifact = built_variants("pruned_structured")
    module, original = artifact.module, tiny_baseline.module
    assert module is not None and original is not None
    before = [conv.out_channels for conv in _convs(original)]
    after = [conv.out_channels for conv in _convs(module)]
    assert before == [16, 24, 32]
    assert after == [channels // 2 for channels in before]
    assert _params(module) < 0.35 * _params(original)
    assert int(artifact.tags["prune.params_after"]) == _params(module)
    assert int(artifact.tags["prune.conv_channels_after"]) == sum(after)
    assert module.fc.out_features == 10  # type: ignore[union-attr]
    assert module(torch.randn(2, *artifact.input_shape)).shape == (2, 10)


@pytest.mark.parametrize("name", ["pruned_unstructured", "pruned_structured"])
@pytest.mark.parametrize("ratio", ["0", "1", "1.5", "-0.2", "half", "nan"])
def test_ratio_outside_zero_one_is_a_config_error(
    name: str, ratio: str, tiny_baseline: ModelArtifact, make_context: Callable[..., VariantContext]
) -> None:
    with pytest.raises(ConfigError) as caught:
        get_variant(name).build(tiny_baseline, make_context(ratio=ratio))
    assert caught.value.parameter == "ratio"
    assert caught.value.allowed == "a number in (0, 1)"
    assert caught.value.value == ratio


def test_ratio_and_fine_tune_epochs_are_honoured(
    tiny_baseline: ModelArtifact, make_context: Callable[..., VariantContext]
) -> None:
    artifact = get_variant("pruned_unstructured").build(tiny_baseline, make_context(ratio="0.25", fine_tune_epochs="0"))
    assert float(artifact.tags["prune.weight_sparsity"]) == pytest.approx(0.25, abs=0.01)
    assert artifact.tags["prune.fine_tune"] == "none (fine_tune_epochs=0)"
    structured = get_variant("pruned_structured").build(tiny_baseline, make_context(ratio="0.25", fine_tune_epochs="0"))
    assert [conv.out_channels for conv in _convs(structured.module)] == [12, 18, 24]  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="fine_tune_epochs"):
        get_variant("pruned_structured").build(tiny_baseline, make_context(fine_tune_epochs="-1"))


def test_without_labels_pruning_skips_the_fine_tune(
    tiny_baseline: ModelArtifact, make_context: Callable[..., VariantContext], synthetic_data: DatasetSplits
) -> None:
    artifact = get_variant("pruned_structured").build(tiny_baseline, make_context(synthetic_data))
    assert "no labelled training split" in artifact.tags["prune.fine_tune"]
