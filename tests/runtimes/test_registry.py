"""The registry: names, unknown names, and runtimes whose optional extra is missing."""

from __future__ import annotations

import sys

import pytest
import torch

from mlperf_track.errors import ConfigError, MissingDependencyError, UnsupportedError
from mlperf_track.models.artifact import ModelArtifact
from mlperf_track.runtimes import PrepareRequest, Runtime, get_runtime, runtime_names

from .conftest import INPUT_SHAPE


def test_every_runtime_of_the_design_is_registered() -> None:
    names = runtime_names()
    assert names[0] == "eager"
    assert set(names) == {"eager", "compile", "onnxruntime", "tensorrt", "openvino"}


@pytest.mark.parametrize("name", runtime_names())
def test_get_runtime_returns_a_fresh_instance_with_its_name(name: str) -> None:
    runtime = get_runtime(name)
    assert isinstance(runtime, Runtime)
    assert runtime.name == name
    assert get_runtime(name) is not runtime


def test_unknown_runtime_lists_the_names_and_the_closest_match() -> None:
    with pytest.raises(ConfigError) as raised:
        get_runtime("onnxruntim")
    message = str(raised.value)
    assert all(name in message for name in runtime_names())
    assert "did you mean onnxruntime" in message


def test_unknown_runtime_without_a_close_match_still_lists_the_names() -> None:
    with pytest.raises(ConfigError, match="eager, compile, onnxruntime, tensorrt, openvino"):
        get_runtime("xla")


@pytest.mark.parametrize(
    ("name", "module", "extra"),
    [
        ("onnxruntime", "onnxruntime", "onnx"),
        ("openvino", "openvino", "openvino"),
        ("tensorrt", "tensorrt", "tensorrt"),
    ],
)
def test_a_missing_extra_is_named(
    name: str, module: str, extra: str, monkeypatch: pytest.MonkeyPatch, net: torch.nn.Module
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    runtime = get_runtime(name)
    assert runtime.extra == extra
    reason = runtime.unavailable_reason()
    assert reason is not None
    assert f"mlperf-track[{extra}]" in reason
    assert runtime.capabilities().devices == frozenset()
    with pytest.raises(UnsupportedError, match=rf"mlperf-track\[{extra}\]"):
        runtime.check("cpu", "fp32")
    artifact = ModelArtifact("tiny", INPUT_SHAPE, module=net)
    with pytest.raises(MissingDependencyError, match=rf"mlperf-track\[{extra}\]") as raised:
        runtime.prepare(artifact, PrepareRequest("cpu", "fp32", (1,), INPUT_SHAPE))
    assert raised.value.extra == extra
    assert raised.value.package == module


@pytest.mark.parametrize("name", ["eager", "compile"])
def test_torch_runtimes_need_no_extra(name: str) -> None:
    runtime = get_runtime(name)
    assert runtime.extra is None
    assert runtime.unavailable_reason() is None
