"""One suite that every registered recipe passes (on this machine's CPU, where it is available)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mlperf_track.data.base import DatasetSplits
from mlperf_track.engine.accuracy import evaluate_accuracy, module_predictor
from mlperf_track.models.artifact import ModelArtifact
from mlperf_track.spec import PRECISIONS
from mlperf_track.variants.registry import get_variant, variant_names

#: Recipes meant to approximate the baseline closely (quantization): their predictions must mostly agree.
APPROXIMATIONS = (
    "quantized_int8_pt2e",
    "quantized_int8_dynamic",
    "quantized_fp16",
    "quantized_bf16",
    "quantized_int8_ort",
    "quantized_int8_nncf",
)


def _predict(artifact: ModelArtifact, onnx_predict: Callable[[Path], Callable]) -> Callable:
    if artifact.module is not None:
        return module_predictor(artifact.module)
    assert artifact.onnx_path is not None
    return onnx_predict(artifact.onnx_path)


@pytest.mark.parametrize("name", variant_names())
def test_recipe_builds_a_working_artifact(
    name: str,
    built_variants: Callable[[str], ModelArtifact],
    tiny_baseline: ModelArtifact,
    digits_small: DatasetSplits,
    onnx_predict: Callable[[Path], Callable],
) -> None:
    variant = get_variant(name)
    if "image" not in variant.workloads:
        pytest.skip("a recipe for text models: tests/variants/test_variants_text.py builds it on one")
    reason = variant.unavailable_reason("cpu")
    if reason is not None and name != "quantized_fp16":  # fp16 builds on any CPU; it is only slow there
        pytest.skip(reason)
    artifact = built_variants(name)
    assert isinstance(artifact, ModelArtifact)
    assert artifact.tags["variant.recipe"] == name
    assert artifact.tags["variant.base"] == tiny_baseline.name
    assert artifact.name != tiny_baseline.name
    assert artifact.input_shape == tiny_baseline.input_shape
    assert artifact.num_classes == 10
    assert artifact.module is not tiny_baseline.module
    assert artifact.precision is None or artifact.precision in PRECISIONS
    if artifact.runtime is not None:
        from mlperf_track.runtimes.registry import runtime_names

        assert artifact.runtime in runtime_names()
    assert digits_small.val is not None
    reference = evaluate_accuracy(module_predictor(tiny_baseline.module), digits_small.val)  # type: ignore[arg-type]
    report = evaluate_accuracy(_predict(artifact, onnx_predict), digits_small.val, reference=reference)
    assert report.samples == len(digits_small.val)  # type: ignore[arg-type]
    assert report.agreement is not None
    if name in APPROXIMATIONS:
        assert report.agreement >= 0.85, f"{name} disagrees with the baseline on {1 - report.agreement:.0%}"
