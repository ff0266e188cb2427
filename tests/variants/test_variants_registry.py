"""Variant names, groups and resolution for a device; bad names and devices give clear errors."""

from __future__ import annotations

import pytest

from mlperf_track.errors import ConfigError, UnsupportedError
from mlperf_track.variants import registry
from mlperf_track.variants.base import Variant
from mlperf_track.variants.compose import ComposedVariant
from mlperf_track.variants.registry import get_variant, group_members, resolve_variants, variant_names

CONCRETE = [
    "quantized_int8_pt2e",
    "quantized_int8_dynamic",
    "quantized_fp16",
    "quantized_bf16",
    "quantized_int8_ort",
    "quantized_int8_nncf",
    "pruned_unstructured",
    "pruned_structured",
    "distilled",
    "pruned_structured+quantized_int8_pt2e",
]
#: Recipes for text models only, registered after the image ones.
TEXT_ONLY = ["quantized_int8_weight_only", "quantized_int4_weight_only", "pruned_mlp_channels", "distilled_shallow"]
CPU_ONLY = ["quantized_int8_pt2e", "quantized_int8_dynamic", "quantized_int8_ort", "quantized_int8_nncf"]


def test_every_recipe_is_registered_under_its_name() -> None:
    assert variant_names() == CONCRETE + TEXT_ONLY
    for name in CONCRETE + TEXT_ONLY:
        variant = get_variant(name)
        assert isinstance(variant, Variant) and variant.name == name


def test_groups_expand_to_their_members() -> None:
    assert group_members("quantized") == CONCRETE[:6] + TEXT_ONLY[:2]
    assert group_members("pruned") == ["pruned_unstructured", "pruned_structured", "pruned_mlp_channels"]
    assert group_members("distilled") == ["distilled", "distilled_shallow"]
    assert group_members("all") == CONCRETE + TEXT_ONLY


def test_resolution_on_cpu_keeps_what_this_cpu_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry._VARIANTS["quantized_fp16"], "unavailable_reason", lambda device: "no fp16 here")
    names = [variant.name for variant in resolve_variants(["quantized", "pruned", "distilled"], "cpu")]
    assert "quantized_fp16" not in names
    assert names == [name for name in CONCRETE[:9] if name != "quantized_fp16"]


def test_groups_on_cuda_leave_out_cpu_only_recipes() -> None:
    names = [variant.name for variant in resolve_variants(["all"], "cuda")]
    for name in CPU_ONLY:
        assert name not in names
    assert "pruned_structured+quantized_int8_pt2e" not in names  # its PT2E step is CPU-only
    assert {"pruned_unstructured", "pruned_structured", "distilled"} <= set(names)


@pytest.mark.parametrize("name", CPU_ONLY)
def test_naming_a_recipe_the_device_cannot_run_is_an_error(name: str) -> None:
    reason = get_variant(name).unavailable_reason("cuda")
    assert reason and "cuda" in reason
    with pytest.raises(UnsupportedError, match=name) as caught:
        resolve_variants([name], "cuda")
    assert reason in str(caught.value)


def test_unknown_name_lists_known_names_and_close_matches() -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_variants(["pruned_structurd"], "cpu")
    error = caught.value
    assert error.parameter == "variant" and error.value == "pruned_structurd"
    assert "did you mean pruned_structured" in str(error)
    assert "quantized_int8_ort" in str(error) and "all" in str(error)


def test_compositions_baseline_and_duplicates() -> None:
    composed = get_variant("pruned_unstructured+quantized_bf16")
    assert isinstance(composed, ComposedVariant)
    assert [step.name for step in composed.steps] == ["pruned_unstructured", "quantized_bf16"]
    with pytest.raises(ConfigError, match="pruned_unstructurd"):
        get_variant("pruned_unstructurd+quantized_bf16")
    resolved = resolve_variants(["baseline", "distilled", "distilled", "pruned"], "cpu")
    assert [variant.name for variant in resolved] == ["distilled", "pruned_unstructured", "pruned_structured"]
    assert resolve_variants([], "cpu") == []


def test_missing_extras_explain_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    missing = {"torchao", "torch_pruning", "onnxruntime"}

    def fake_find_spec(name: str, *args: object) -> object:
        return None if name in missing else real(name, *args)  # type: ignore[arg-type]

    for module in ("quantize_pt2e", "quantize_ort"):
        monkeypatch.setattr(f"mlperf_track.variants.{module}.find_spec", fake_find_spec)
    monkeypatch.setattr(importlib.util, "find_spec", fake_find_spec)
    assert "mlperf-track[quantize]" in (get_variant("quantized_int8_pt2e").unavailable_reason("cpu") or "")
    assert "mlperf-track[onnx]" in (get_variant("quantized_int8_ort").unavailable_reason("cpu") or "")
    assert "mlperf-track[prune]" in (get_variant("pruned_structured").unavailable_reason("cpu") or "")
    with pytest.raises(UnsupportedError, match=r"pruned_structured: needs torch-pruning"):
        resolve_variants(["pruned_structured+quantized_int8_pt2e"], "cpu")
