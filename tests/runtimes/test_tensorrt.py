"""The tensorrt runtime's GPU-free parts: availability, capabilities, typing choice, builder flags, engine cache.

The engine build and execution need a GPU and TensorRT; they run in the conformance suite on such a machine.
"""

from __future__ import annotations

import dataclasses
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch

from mlperf_track.errors import ExportError, MissingDependencyError, UnsupportedError
from mlperf_track.models.artifact import ModelArtifact
from mlperf_track.runtimes import PrepareRequest, _trt_build, get_runtime
from mlperf_track.runtimes._trt_build import EngineSpec, build_engine, cached_engine, trt_major
from mlperf_track.runtimes.trt import gpu_precisions, strongly_typed

from .conftest import INPUT_SHAPE

SPEC = EngineSpec(
    onnx_digest="ab" * 32,
    precision="fp16",
    min_batch=1,
    opt_batch=8,
    max_batch=8,
    input_shape=INPUT_SHAPE,
    trt_version="10.13.0.35",
    gpu_name="NVIDIA H100 80GB HBM3",
    strongly_typed=False,
    workspace_mb=4096,
)


def test_without_tensorrt_the_extra_is_named(monkeypatch: pytest.MonkeyPatch, net: torch.nn.Module) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    runtime = get_runtime("tensorrt")
    assert "mlperf-track[tensorrt]" in str(runtime.unavailable_reason())
    with pytest.raises(MissingDependencyError, match=r"mlperf-track\[tensorrt\]"):
        runtime.prepare(
            ModelArtifact("tiny", INPUT_SHAPE, module=net), PrepareRequest("cuda", "fp16", (1,), INPUT_SHAPE)
        )


def test_without_a_gpu_the_reason_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    runtime = get_runtime("tensorrt")
    assert "CUDA GPU" in str(runtime.unavailable_reason())
    assert runtime.capabilities().devices == frozenset()
    with pytest.raises(UnsupportedError, match="CUDA GPU"):
        runtime.check("cuda", "fp16")


def test_capabilities_follow_the_compute_capability() -> None:
    assert gpu_precisions((7, 5)) == {"fp32", "fp16", "int8"}
    assert gpu_precisions((8, 0)) == {"fp32", "tf32", "fp16", "bf16", "int8"}
    assert gpu_precisions((9, 0)) == {"fp32", "tf32", "fp16", "bf16", "int8", "fp8"}


def test_typing_follows_the_tensorrt_version() -> None:
    assert trt_major("10.13.0.35") == 10
    assert strongly_typed("10.13.0.35", "auto") is False
    assert strongly_typed("11.0.0", "auto") is True
    assert strongly_typed("10.13.0.35", "strong") is True
    assert strongly_typed("10.13.0.35", "weak") is False
    with pytest.raises(UnsupportedError, match="removed weak typing"):
        strongly_typed("11.1.0", "weak")


def test_engine_cache_key_changes_with_every_field() -> None:
    assert SPEC.cache_key() == dataclasses.replace(SPEC).cache_key()
    changed: dict[str, Any] = {
        "onnx_digest": "cd" * 32,
        "precision": "bf16",
        "min_batch": 2,
        "opt_batch": 4,
        "max_batch": 16,
        "input_shape": (3, 32, 32),
        "trt_version": "11.0.0",
        "gpu_name": "NVIDIA H200",
        "strongly_typed": True,
        "workspace_mb": 1024,
    }
    assert set(changed) == {field.name for field in dataclasses.fields(EngineSpec)}
    keys = {dataclasses.replace(SPEC, **{name: value}).cache_key() for name, value in changed.items()}
    assert len(keys) == len(changed)
    assert SPEC.cache_key() not in keys


class _Config:
    def __init__(self) -> None:
        self.flags: set[str] = {"TF32"}  # TensorRT enables TF32 by default
        self.profiles: list[Any] = []

    def set_flag(self, flag: str) -> None:
        self.flags.add(flag)

    def clear_flag(self, flag: str) -> None:
        self.flags.discard(flag)

    def get_flag(self, flag: str) -> bool:
        return flag in self.flags

    def set_memory_pool_limit(self, pool: str, size: int) -> None:
        self.pool = (pool, size)

    def add_optimization_profile(self, profile: Any) -> None:
        self.profiles.append(profile)


def _fake_trt(version: str, flags: tuple[str, ...], parse_ok: bool = True) -> Any:
    """A stand-in for the tensorrt module: enough of the builder API to check what the build asks for."""
    trt: Any = types.SimpleNamespace(__version__=version)
    trt.BuilderFlag = types.SimpleNamespace(**{flag: flag for flag in flags})
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=0)
    severity = types.SimpleNamespace(INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4)
    trt.ILogger = type("ILogger", (), {"Severity": severity, "__init__": lambda self: None})
    trt.config = _Config()
    error = types.SimpleNamespace(desc=lambda: "unsupported node", node_operator=lambda: "NonMaxSuppression")
    network = types.SimpleNamespace(get_input=lambda index: types.SimpleNamespace(name="input"))
    profile = types.SimpleNamespace(shapes={})
    profile.set_shape = lambda name, low, opt, high: profile.shapes.update({name: (low, opt, high)})
    trt.network_flags = []

    def create_network(flags: int) -> Any:
        trt.network_flags.append(flags)
        return network

    trt.Builder = lambda logger: types.SimpleNamespace(
        create_network=create_network,
        create_builder_config=lambda: trt.config,
        create_optimization_profile=lambda: profile,
        build_serialized_network=lambda net, config: b"serialized-engine",
    )
    trt.OnnxParser = lambda net, logger: types.SimpleNamespace(
        parse_from_file=lambda path: parse_ok, num_errors=0 if parse_ok else 1, get_error=lambda index: error
    )
    return trt


def test_weak_typing_sets_the_precision_flag_and_the_profile(tmp_path: Path) -> None:
    trt = _fake_trt("10.13.0", ("FP16", "BF16", "INT8", "FP8", "TF32"))
    serialized, tags = build_engine(trt, tmp_path / "model.onnx", SPEC)
    assert serialized == b"serialized-engine"
    assert trt.config.flags == {"FP16", "TF32"}
    assert trt.network_flags == [0]
    assert trt.config.pool == ("WORKSPACE", 4096 << 20)
    assert trt.config.profiles[0].shapes["input"] == ((1, *INPUT_SHAPE), (8, *INPUT_SHAPE), (8, *INPUT_SHAPE))
    assert tags["tensorrt.builder_flags"] == "FP16"


def test_fp32_turns_tf32_off(tmp_path: Path) -> None:
    trt = _fake_trt("10.13.0", ("FP16", "BF16", "INT8", "FP8", "TF32"))
    _, tags = build_engine(trt, tmp_path / "model.onnx", dataclasses.replace(SPEC, precision="fp32"))
    assert trt.config.flags == set()
    assert tags["tensorrt.tf32"] == "false"


def test_strong_typing_sets_no_precision_flag(tmp_path: Path) -> None:
    trt = _fake_trt("11.0.0", ("TF32",))  # TensorRT 11 has no FP16/INT8 builder flags
    _, tags = build_engine(trt, tmp_path / "model.onnx", dataclasses.replace(SPEC, strongly_typed=True))
    assert trt.config.flags == {"TF32"}
    assert trt.network_flags == [1 << 0]  # STRONGLY_TYPED
    assert "tensorrt.builder_flags" not in tags


def test_a_parser_failure_names_the_operator(tmp_path: Path) -> None:
    trt = _fake_trt("10.13.0", ("FP16", "TF32"), parse_ok=False)
    with pytest.raises(ExportError, match="at operator NonMaxSuppression: unsupported node"):
        build_engine(trt, tmp_path / "model.onnx", SPEC)


def test_engines_are_cached_with_their_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    builds: list[EngineSpec] = []

    def fake_build(trt: Any, onnx_path: Path, spec: EngineSpec) -> tuple[bytes, dict[str, str]]:
        builds.append(spec)
        return b"engine", {"tensorrt.tf32": "true"}

    monkeypatch.setattr(_trt_build, "build_engine", fake_build)
    first = cached_engine(None, tmp_path / "model.onnx", SPEC, tmp_path)
    second = cached_engine(None, tmp_path / "model.onnx", SPEC, tmp_path)
    assert first == (b"engine", {"tensorrt.tf32": "true", "tensorrt.engine_cached": "false"})
    assert second == (b"engine", {"tensorrt.tf32": "true", "tensorrt.engine_cached": "true"})
    assert len(builds) == 1
    cached_engine(None, tmp_path / "model.onnx", dataclasses.replace(SPEC, max_batch=16), tmp_path)
    assert len(builds) == 2
