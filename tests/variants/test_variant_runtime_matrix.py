"""Every variant x runtime x precision the pipeline would plan runs where the case says: CPU in CI, CUDA when present.

The plan is derived the way the session derives it, from what variants and runtimes declare (a variant's pinned
runtime and precision, a runtime's precisions and channels-last support on the device), never from a list
written here. On the CPU the eager cases and the variants' own pinned runtimes run by default; the ONNX-based
runtimes (an export per variant) and ``torch.compile`` of the pinned PT2E graphs are ``slow``, and the other
``torch.compile`` cases (C++ builds, 10-30 s each; the runtime conformance suite compiles once) run only with
MLPERF_TRACK_ALL_COMPILE_CASES=1. On CUDA (``gpu`` marker) all run.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mlperf_track.models.artifact import ModelArtifact
from mlperf_track.runtimes import PrepareRequest, get_runtime, runtime_names
from mlperf_track.runtimes._torch import placement
from mlperf_track.runtimes.base import ARTIFACT_PRECISIONS
from mlperf_track.variants.registry import get_variant, variant_names

BATCH_SIZES = (1, 3)
#: Largest |output - reference| allowed, relative to the largest |reference| (the reference is the artifact
#: itself, in float32 on the CPU, so only the runtime and precision are under test here, not the recipe).
TOLERANCE = {"fp32": 1e-3, "tf32": 1e-2, "fp16": 2e-2, "bf16": 5e-2, "int8": 0.15, "fp8": 0.25}
#: Runtimes that run on the CPU by default (cheap); the others are ``slow`` there.
FAST_CPU_RUNTIMES = frozenset({"eager"})
#: fp16 builds on any CPU (torch has CPU half kernels); its variant is unavailable there only because it is slow.
BUILDS_ANYWHERE = frozenset({"quantized_fp16"})
ALL_COMPILE_CASES = os.environ.get("MLPERF_TRACK_ALL_COMPILE_CASES") == "1"


#: The recipes for image models (the text ones are matched with runtimes in tests/variants/test_variants_text.py).
IMAGE_RECIPES = [name for name in variant_names() if "image" in get_variant(name).workloads]


def _variant_plan(variant: str, device: str) -> list[tuple[str, str]]:
    """The (runtime, precision) pairs the session plans for ``variant`` on ``device``."""
    pinned_runtime = pinned_precision = None
    if variant != "baseline":
        recipe = get_variant(variant)
        if recipe.unavailable_reason(device) is not None and not (device == "cpu" and variant in BUILDS_ANYWHERE):
            return []
        pinned_runtime, pinned_precision = recipe.pinned_runtime, recipe.pinned_precision
    pairs = []
    for name in [pinned_runtime] if pinned_runtime else runtime_names():
        runtime = get_runtime(name)
        if runtime.unavailable_reason() is not None:
            continue
        supported = runtime.capabilities().precisions(device)
        if pinned_precision:
            precisions = [pinned_precision] if pinned_precision in supported else []
        else:
            precisions = sorted(supported - ARTIFACT_PRECISIONS)
        pairs += [(name, precision) for precision in precisions]
    return pairs


def _marks(device: str, runtime: str, pinned: bool) -> list[pytest.MarkDecorator]:
    if device == "cuda":
        return [pytest.mark.gpu, *([pytest.mark.slow] if runtime == "compile" else [])]
    if runtime in FAST_CPU_RUNTIMES or (pinned and runtime != "compile"):
        return []
    if runtime == "compile" and not pinned and not ALL_COMPILE_CASES:
        reason = "CPU compile cases are 10-30 s each; MLPERF_TRACK_ALL_COMPILE_CASES=1 runs them"
        return [pytest.mark.slow, pytest.mark.skip(reason=reason)]
    return [pytest.mark.slow]


def _cases() -> list[Any]:
    cases = []
    for device in ("cpu", "cuda"):
        for variant in ["baseline", *IMAGE_RECIPES]:
            pinned = variant != "baseline" and get_variant(variant).pinned_runtime is not None
            for runtime, precision in _variant_plan(variant, device):
                marks = _marks(device, runtime, pinned)
                case = (device, variant, runtime, precision)
                cases.append(pytest.param(case, marks=marks, id="-".join(case)))
    return cases


@pytest.fixture(scope="module")
def matrix_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One runtime cache for the module: onnxruntime and openvino share each variant's ONNX export."""
    return tmp_path_factory.mktemp("matrix-cache")


def _as_float(value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", torch.float32)
    return torch.from_numpy(np.asarray(value, dtype=np.float32))


def _reference(artifact: ModelArtifact, images: torch.Tensor, onnx_predict: Callable[..., Any]) -> torch.Tensor:
    """The artifact's own output in float32 on the CPU (its recipe's effect is not under test here)."""
    if artifact.module is None:
        assert artifact.onnx_path is not None
        return _as_float(onnx_predict(artifact.onnx_path)(images))
    module = artifact.module
    if artifact.precision not in ARTIFACT_PRECISIONS:
        module = copy.deepcopy(module).float()
    with torch.no_grad():
        return _as_float(module(images))


def _state(module: torch.nn.Module | None) -> list[tuple[str, torch.device, torch.dtype]]:
    if module is None:
        return []
    # quantized modules keep non-tensor entries (packed-params dtypes) in their state
    return [(name, value.device, value.dtype) for name, value in module.state_dict().items() if torch.is_tensor(value)]


@pytest.mark.parametrize("case", _cases())
def test_variant_runs_on_the_case_device(
    case: tuple[str, str, str, str],
    built_variants: Callable[[str], ModelArtifact],
    tiny_baseline: ModelArtifact,
    onnx_predict: Callable[..., Any],
    matrix_cache: Path,
) -> None:
    device, variant, runtime, precision = case
    artifact = tiny_baseline if variant == "baseline" else built_variants(variant)
    before = _state(artifact.module)
    member = get_runtime(runtime)
    channels_last = member.honours_channels_last(artifact)
    request = PrepareRequest(
        device, precision, BATCH_SIZES, artifact.input_shape, channels_last=channels_last, cache_dir=matrix_cache
    )
    prepared = member.prepare(artifact, request)
    try:
        assert prepared.device == device
        assert prepared.tags.get("runtime.channels_last", str(channels_last).lower()) == str(channels_last).lower()
        for batch_size in BATCH_SIZES:
            inputs = prepared.make_input(batch_size, seed=batch_size)
            if isinstance(inputs, torch.Tensor):
                assert inputs.device.type == device
                if channels_last:
                    assert inputs.is_contiguous(memory_format=torch.channels_last)
            outputs = prepared(inputs)
            if isinstance(outputs, torch.Tensor):
                assert outputs.device.type == device
            assert tuple(outputs.shape) == (batch_size, 10)
        images = torch.randn((5, *artifact.input_shape), generator=torch.Generator().manual_seed(4))
        predicted = prepared.predict(images)
        assert predicted.dtype == torch.float32 and predicted.device.type == "cpu"
        expected = _reference(artifact, images, onnx_predict)
        tolerance = TOLERANCE[precision]
        torch.testing.assert_close(predicted, expected, rtol=tolerance, atol=tolerance * float(expected.abs().max()))
    finally:
        prepared.close()
    assert _state(artifact.module) == before, "the runtime moved or cast the artifact itself"


@pytest.mark.parametrize("variant", ["baseline", *IMAGE_RECIPES])
def test_every_float_artifact_is_placed_on_the_case_device(
    variant: str, built_variants: Callable[[str], ModelArtifact], tiny_baseline: ModelArtifact
) -> None:
    """The placement decision for a CUDA case, checked on any machine: only pinned or quantized artifacts stay."""
    recipe = None if variant == "baseline" else get_variant(variant)
    if recipe is not None and recipe.unavailable_reason("cpu") is not None and variant not in BUILDS_ANYWHERE:
        pytest.skip(recipe.unavailable_reason("cpu"))
    artifact = tiny_baseline if recipe is None else built_variants(variant)
    if artifact.module is None:
        pytest.skip("an ONNX-file artifact: the ONNX runtimes read it, nothing is placed")
    precision = artifact.precision or "fp32"
    target = placement(artifact, PrepareRequest("cuda", precision, (1,), artifact.input_shape, channels_last=True))
    if artifact.device is not None or artifact.precision in ARTIFACT_PRECISIONS:
        assert target.device is None and not target.channels_last
        assert artifact.device == "cpu"  # every quantized recipe here has CPU kernels only, and says so
    else:
        assert target.device == "cuda" and target.channels_last
        assert target.dtype == {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


@pytest.mark.parametrize("variant", IMAGE_RECIPES)
def test_declared_pins_match_the_built_artifact(variant: str, built_variants: Callable[[str], ModelArtifact]) -> None:
    recipe = get_variant(variant)
    if recipe.unavailable_reason("cpu") is not None and variant not in BUILDS_ANYWHERE:
        pytest.skip(recipe.unavailable_reason("cpu"))
    artifact = built_variants(variant)
    assert (artifact.precision, artifact.runtime) == (recipe.pinned_precision, recipe.pinned_runtime)
