"""The GPU-facing decisions of the runtimes, checked on any machine: declared capabilities, artifact device pins,
the experimental flag, the ONNX Runtime stream options, and the compile cache state.

Where a GPU would be needed, only the hardware is faked (``torch.cuda.current_device``, a stream object), never
the decision under test. ``test_gpu_streams.py`` runs the same paths on a real GPU.
"""

from __future__ import annotations

import logging
import types
from pathlib import Path

import pytest
import torch

from mlperf_track.errors import UnsupportedError
from mlperf_track.models.artifact import ModelArtifact
from mlperf_track.runtimes import PrepareRequest, get_runtime, runtime_names
from mlperf_track.runtimes import base as runtime_base
from mlperf_track.runtimes._common import WorkDir, check_artifact
from mlperf_track.runtimes.compile import cache_tags
from mlperf_track.runtimes.ort import OnnxRuntimeRuntime, _Plan

from .conftest import INPUT_SHAPE, NUM_CLASSES, dynamic_int8_artifact

#: The runtimes that honour the channels-last memory format (torch's own kernels).
HONOUR_CHANNELS_LAST = {"eager", "compile"}


@pytest.mark.parametrize("name", runtime_names())
def test_channels_last_is_declared_and_never_claimed_for_a_kept_artifact(name: str, net: torch.nn.Module) -> None:
    runtime = get_runtime(name)
    if runtime.unavailable_reason() is not None:
        pytest.skip(runtime.unavailable_reason())
    float_artifact = ModelArtifact("tiny", INPUT_SHAPE, module=net, num_classes=NUM_CLASSES)
    assert runtime.capabilities().channels_last is (name in HONOUR_CHANNELS_LAST)
    assert runtime.honours_channels_last(float_artifact) is (name in HONOUR_CHANNELS_LAST)
    assert not runtime.honours_channels_last(dynamic_int8_artifact(net))
    pinned = ModelArtifact("tiny-cpu", INPUT_SHAPE, module=net, device="cpu")
    assert not runtime.honours_channels_last(pinned)


def test_an_artifact_pinned_to_a_device_runs_only_there(net: torch.nn.Module) -> None:
    pinned = ModelArtifact("pt2e", INPUT_SHAPE, module=net, precision="int8", runtime="compile", device="cpu")
    with pytest.raises(UnsupportedError, match=r"device.*must stay on cpu"):
        check_artifact("compile", pinned, "int8", "cuda")
    check_artifact("compile", pinned, "int8", "cpu")
    half = ModelArtifact("half", INPUT_SHAPE, module=net, precision="fp16")
    check_artifact("eager", half, "fp16", "cuda")  # a half-precision variant goes wherever the case runs


def test_an_experimental_path_is_tagged_and_warned_about_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime_base, "_WARNED", set())
    runtime = get_runtime("tensorrt")
    assert "cuda" in runtime.experimental_devices
    with caplog.at_level(logging.WARNING, logger="mlperf_track.runtimes.base"):
        assert runtime.experimental_tags("cuda") == {"runtime.experimental": "true"}
        assert runtime.experimental_tags("cuda") == {"runtime.experimental": "true"}
    assert len([r for r in caplog.records if "not yet been verified" in r.getMessage()]) == 1
    assert get_runtime("eager").experimental_tags("cpu") == {}


@pytest.mark.parametrize("name", runtime_names())
def test_every_cuda_path_is_flagged_until_gpu_check_proves_it(name: str) -> None:
    """Remove a runtime's "cuda" from ``experimental_devices`` once benchmarks/gpu_check.py passed on hardware."""
    runtime_class = type(get_runtime(name))
    if name == "openvino":
        assert "cuda" not in runtime_class.experimental_devices  # a CPU-only runtime
    else:
        assert "cuda" in runtime_class.experimental_devices


def test_the_onnxruntime_gpu_session_computes_on_the_stream_it_is_given(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)  # the GPU is absent here, not the logic
    stream = types.SimpleNamespace(cuda_stream=140_000_123)
    runtime = OnnxRuntimeRuntime()
    work = WorkDir(tmp_path, "onnxruntime")
    request = PrepareRequest("cuda", "fp16", (1, 8), INPUT_SHAPE)
    providers = runtime._provider_list(_Plan("cuda", tmp_path / "m.onnx", "export"), request, work, stream)
    name, options = providers[0]
    assert name == "CUDAExecutionProvider" and providers[-1] == "CPUExecutionProvider"
    assert options["user_compute_stream"] == "140000123" and options["has_user_compute_stream"] == "1"
    assert options["use_tf32"] == "0"


def test_the_compile_cache_state_is_read_from_the_counters() -> None:
    zero = {"hit": 0, "miss": 0, "bypass": 0}
    assert cache_tags(zero, {"hit": 3, "miss": 0, "bypass": 0})["runtime.inductor_cache"] == "warm"
    assert cache_tags(zero, {"hit": 0, "miss": 2, "bypass": 0})["runtime.inductor_cache"] == "cold"
    assert cache_tags(zero, {"hit": 1, "miss": 1, "bypass": 0})["runtime.inductor_cache"] == "mixed"
    assert cache_tags(zero, {"hit": 0, "miss": 0, "bypass": 1})["runtime.inductor_cache"] == "bypass"
    tags = cache_tags({"hit": 5, "miss": 1, "bypass": 0}, {"hit": 7, "miss": 1, "bypass": 0})
    assert tags["runtime.inductor_cache"] == "warm" and tags["runtime.inductor_cache_hits"] == "2"


@pytest.mark.slow
def test_a_second_compile_of_the_same_model_hits_the_cache(net: torch.nn.Module, tmp_path: Path) -> None:
    artifact = ModelArtifact("tiny", INPUT_SHAPE, module=net, num_classes=NUM_CLASSES)
    request = PrepareRequest("cpu", "fp32", (2,), INPUT_SHAPE, cache_dir=tmp_path)
    first = get_runtime("compile").prepare(artifact, request)
    first.close()  # resets dynamo: the second compile starts from scratch, with the on-disk caches warm
    second = get_runtime("compile").prepare(artifact, request)
    second.close()
    if second.tags["runtime.inductor_fx_graph_cache"] == "disabled":
        pytest.skip("Inductor's FX graph cache is disabled in this environment")
    assert first.tags["runtime.inductor_cache"] in {"cold", "warm", "mixed"}
    assert second.tags["runtime.inductor_cache"] == "warm"
    assert int(second.tags["runtime.inductor_cache_hits"]) > 0
