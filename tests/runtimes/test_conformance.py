"""One conformance suite that every registered runtime passes, for each (device, precision) it declares here.

A runtime whose dependencies do not import, or a device this machine lacks, is skipped with the reason.
torch.compile builds C++ on CPU (about 10-30 s a case), so only its fp32 CPU case runs by default; set
MLPERF_TRACK_ALL_COMPILE_CASES=1 to run all of them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mlperf_track.errors import UnsupportedError
from mlperf_track.models.artifact import ModelArtifact
from mlperf_track.runtimes import PrepareRequest, get_runtime, runtime_names
from mlperf_track.spec import CASE_DEVICES, PRECISIONS

from .conftest import (
    INPUT_SHAPE,
    NUM_CLASSES,
    Tiny,
    dynamic_int8_artifact,
    pt2e_int8_artifact,
    qdq_int8_artifact,
)

BATCH_SIZES = (1, 3)
#: Largest |output - eager fp32 output| allowed, relative to the largest |eager fp32 output|.
TOLERANCE = {"fp32": 1e-4, "tf32": 1e-2, "fp16": 1e-2, "bf16": 3e-2, "int8": 0.1, "fp8": 0.2}
#: The int8 artifact form each runtime consumes.
INT8_FORMS: dict[str, Callable[[torch.nn.Module, Path], ModelArtifact]] = {
    "eager": lambda net, _: dynamic_int8_artifact(net),
    "compile": lambda net, _: pt2e_int8_artifact(net),
    "onnxruntime": qdq_int8_artifact,
    "openvino": qdq_int8_artifact,
    "tensorrt": qdq_int8_artifact,
}
ALL_COMPILE_CASES = os.environ.get("MLPERF_TRACK_ALL_COMPILE_CASES") == "1"


def _marks(name: str, device: str, precision: str) -> list[pytest.MarkDecorator]:
    marks = [pytest.mark.gpu] if device == "cuda" else []
    if name == "compile":
        marks.append(pytest.mark.slow)
        if device == "cpu" and precision != "fp32" and not ALL_COMPILE_CASES:
            reason = "one compile case on CPU keeps CI short; MLPERF_TRACK_ALL_COMPILE_CASES=1 runs this one"
            marks.append(pytest.mark.skip(reason=reason))
    return marks


def _cases() -> list[Any]:
    cases = []
    for name in runtime_names():
        runtime = get_runtime(name)
        reason = runtime.unavailable_reason()
        if reason is not None:
            cases.append(
                pytest.param((name, "-", "-"), marks=pytest.mark.skip(reason=reason), id=f"{name}-unavailable")
            )
            continue
        capabilities = runtime.capabilities()
        for device in sorted(capabilities.devices):
            for precision in sorted(capabilities.precisions(device)):
                marks = _marks(name, device, precision)
                cases.append(pytest.param((name, device, precision), marks=marks, id=f"{name}-{device}-{precision}"))
    return cases


def _as_float_tensor(value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", torch.float32)
    return torch.from_numpy(np.asarray(value, dtype=np.float32))


def _artifact(name: str, precision: str, net: torch.nn.Module, tmp_path: Path) -> ModelArtifact:
    if precision in ("int8", "fp8"):
        if name not in INT8_FORMS or precision == "fp8":
            pytest.skip(f"no {precision} artifact form is defined for the {name} runtime in this suite")
        return INT8_FORMS[name](net, tmp_path)
    return ModelArtifact("tiny", INPUT_SHAPE, module=net, num_classes=NUM_CLASSES)


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, precision: str) -> None:
    tolerance = TOLERANCE[precision]
    scale = float(expected.abs().max())
    torch.testing.assert_close(actual, expected, rtol=tolerance, atol=tolerance * scale)


@pytest.mark.parametrize("case", _cases())
def test_runtime_conformance(case: tuple[str, str, str], tiny: Tiny, cache_dir: Path, tmp_path: Path) -> None:
    name, device, precision = case
    net, images, reference = tiny.net, tiny.images, tiny.reference
    runtime = get_runtime(name)
    runtime.check(device, precision)
    artifact = _artifact(name, precision, net, tmp_path)
    request = PrepareRequest(device, precision, BATCH_SIZES, INPUT_SHAPE, cache_dir=cache_dir)
    prepared = runtime.prepare(artifact, request)
    try:
        assert prepared.device == device
        assert prepared.tags
        assert all(isinstance(key, str) and isinstance(value, str) for key, value in prepared.tags.items())
        sizes = BATCH_SIZES if runtime.capabilities().dynamic_batch else BATCH_SIZES[:1]
        for batch_size in sizes:
            inputs = prepared.make_input(batch_size, seed=batch_size)
            assert tuple(inputs.shape) == (batch_size, *INPUT_SHAPE)
            outputs = _as_float_tensor(prepared(inputs))
            assert tuple(outputs.shape) == (batch_size, NUM_CLASSES)
            with torch.no_grad():
                expected = net(_as_float_tensor(inputs))
            _assert_close(outputs, expected, precision)
        again = _as_float_tensor(prepared.make_input(3, seed=7))
        assert torch.equal(again, _as_float_tensor(prepared.make_input(3, seed=7)))
        assert not torch.equal(again, _as_float_tensor(prepared.make_input(3, seed=8)))
        predicted = prepared.predict(images)
        assert predicted.dtype == torch.float32
        assert predicted.device.type == "cpu"
        assert tuple(predicted.shape) == (images.shape[0], NUM_CLASSES)
        _assert_close(predicted, reference, precision)
    finally:
        prepared.close()
    prepared.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        prepared(inputs)


@pytest.mark.parametrize("name", runtime_names())
def test_capabilities_are_consistent_with_check(name: str) -> None:
    runtime = get_runtime(name)
    reason = runtime.unavailable_reason()
    if reason is not None:
        with pytest.raises(UnsupportedError, match=name):
            runtime.check("cpu", "fp32")
        return
    capabilities = runtime.capabilities()
    assert capabilities.devices <= set(CASE_DEVICES)
    for device in CASE_DEVICES:
        allowed = capabilities.precisions(device)
        assert allowed <= set(PRECISIONS)
        for precision in PRECISIONS:
            if precision in allowed:
                runtime.check(device, precision)
                continue
            with pytest.raises(UnsupportedError) as raised:
                runtime.check(device, precision)
            message = str(raised.value)
            if device in capabilities.devices:
                assert precision in message
                assert all(name_ in message for name_ in allowed), message
            else:
                assert device in message


@pytest.mark.parametrize("name", runtime_names())
def test_prepare_refuses_an_unsupported_precision(name: str, net: torch.nn.Module) -> None:
    artifact = ModelArtifact("tiny", INPUT_SHAPE, module=net)
    request = PrepareRequest("cpu", "fp8", BATCH_SIZES, INPUT_SHAPE)
    runtime = get_runtime(name)
    reason = runtime.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)  # a missing extra is its own error: see test_registry
    with pytest.raises(UnsupportedError, match="fp8"):
        runtime.prepare(artifact, request)
