"""Expensive steps are built once per baseline and context, so compositions reuse them."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from torch import nn

from mlperf_track.models.artifact import ModelArtifact
from mlperf_track.variants import prune_structured
from mlperf_track.variants.base import VariantContext
from mlperf_track.variants.registry import get_variant


def test_composition_reuses_the_pruned_model(
    tiny_baseline: ModelArtifact, make_context: Callable[..., VariantContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[nn.Module] = []
    real = prune_structured.prune_channels

    def counting(module: nn.Module, example: object, ratio: float) -> nn.Module:
        calls.append(module)
        return real(module, example, ratio)

    monkeypatch.setattr(prune_structured, "prune_channels", counting)
    context = make_context(ratio="0.3", fine_tune_epochs="0")
    pruned = get_variant("pruned_structured").build(tiny_baseline, context)
    assert get_variant("pruned_structured").build(tiny_baseline, context) is pruned
    composed = get_variant("pruned_structured+quantized_int8_pt2e").build(tiny_baseline, context)
    assert len(calls) == 1
    assert composed.tags["prune.params_after"] == pruned.tags["prune.params_after"]
    assert composed.tags["variant.recipe"] == "pruned_structured+quantized_int8_pt2e"
    assert pruned.tags["variant.recipe"] == "pruned_structured"  # the shared step result is not modified
    # Another context (here: another ratio) is another build.
    get_variant("pruned_structured").build(tiny_baseline, make_context(ratio="0.4", fine_tune_epochs="0"))
    assert len(calls) == 2
