"""Member-specific behaviour and bad input: options, artifact pins, tags, export failures."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest
import torch

from mlperf_track.errors import ConfigError, ExportError, UnsupportedError
from mlperf_track.models.artifact import ModelArtifact
from mlperf_track.runtimes import PrepareRequest, get_runtime
from mlperf_track.runtimes.onnx_export import export_onnx
from mlperf_track.runtimes.ort import OnnxRuntimeRuntime
from mlperf_track.runtimes.ov import OpenVinoRuntime

from .conftest import INPUT_SHAPE, NUM_CLASSES, dynamic_int8_artifact
from .test_onnx_export import SvdNet


def _request(precision: str = "fp32", **options: str) -> PrepareRequest:
    return PrepareRequest("cpu", precision, (1, 3), INPUT_SHAPE, options=options)


def _artifact(net: torch.nn.Module) -> ModelArtifact:
    return ModelArtifact("tiny", INPUT_SHAPE, module=net, num_classes=NUM_CLASSES)


# --- artifact pins (shared by every runtime) ---------------------------------------------------------


def test_int8_needs_a_quantized_artifact(net: torch.nn.Module) -> None:
    with pytest.raises(UnsupportedError, match="needs a quantized artifact"):
        get_runtime("eager").prepare(_artifact(net), _request("int8"))


def test_a_quantized_artifact_runs_only_in_its_precision(net: torch.nn.Module) -> None:
    with pytest.raises(UnsupportedError, match="allowed is one of int8"):
        get_runtime("eager").prepare(dynamic_int8_artifact(net), _request("fp32"))


def test_an_artifact_pinned_to_a_runtime_runs_only_there(net: torch.nn.Module) -> None:
    artifact = ModelArtifact("pt2e", INPUT_SHAPE, module=net, precision="int8", runtime="compile")
    with pytest.raises(UnsupportedError, match="allowed is one of compile"):
        get_runtime("eager").prepare(artifact, _request("int8"))


def test_torch_runtimes_refuse_an_onnx_only_artifact(net: torch.nn.Module, cache_dir: Path) -> None:
    artifact = ModelArtifact("onnx", INPUT_SHAPE, onnx_path=export_onnx(net, INPUT_SHAPE, cache_dir))
    with pytest.raises(UnsupportedError, match="onnxruntime, openvino, tensorrt"):
        get_runtime("eager").prepare(artifact, _request())


# --- eager ---------------------------------------------------------------------------------------------


def test_eager_casts_a_copy_and_keeps_the_artifact(net: torch.nn.Module) -> None:
    prepared = get_runtime("eager").prepare(_artifact(net), PrepareRequest("cpu", "bf16", (2,), INPUT_SHAPE))
    assert prepared.make_input(2).dtype == torch.bfloat16
    assert prepared(prepared.make_input(2)).dtype == torch.bfloat16
    assert prepared.tags["runtime.dtype"] == "bfloat16"
    assert next(net.parameters()).dtype == torch.float32
    prepared.close()


def test_eager_channels_last(net: torch.nn.Module, images: torch.Tensor, reference: torch.Tensor) -> None:
    request = PrepareRequest("cpu", "fp32", (2,), INPUT_SHAPE, channels_last=True)
    prepared = get_runtime("eager").prepare(_artifact(net), request)
    assert prepared.make_input(2).is_contiguous(memory_format=torch.channels_last)
    assert prepared.tags["runtime.channels_last"] == "true"
    torch.testing.assert_close(prepared.predict(images), reference, rtol=1e-4, atol=1e-5)
    assert next(net.parameters()).is_contiguous()  # the artifact's weights keep their layout
    prepared.close()


# --- compile (no compilation happens in these: the options are refused first) ------------------------


def test_compile_refuses_cuda_graphs_on_cpu(net: torch.nn.Module) -> None:
    with pytest.raises(UnsupportedError, match="max-autotune-no-cudagraphs") as raised:
        get_runtime("compile").prepare(_artifact(net), _request(compile_mode="reduce-overhead"))
    assert "CUDA graphs need a GPU" in str(raised.value)


def test_compile_lists_its_modes(net: torch.nn.Module) -> None:
    with pytest.raises(ConfigError, match="default, reduce-overhead, max-autotune, max-autotune-no-cudagraphs"):
        get_runtime("compile").prepare(_artifact(net), _request(compile_mode="fastest"))


# --- onnxruntime ---------------------------------------------------------------------------------------


@pytest.fixture
def ort_runtime() -> OnnxRuntimeRuntime:
    pytest.importorskip("onnxruntime")
    runtime = get_runtime("onnxruntime")
    assert isinstance(runtime, OnnxRuntimeRuntime)
    return runtime


def test_onnxruntime_options_become_tags(
    ort_runtime: OnnxRuntimeRuntime, net: torch.nn.Module, cache_dir: Path
) -> None:
    request = PrepareRequest(
        "cpu",
        "fp32",
        (2,),
        INPUT_SHAPE,
        num_threads=1,
        options={"graph_optimization_level": "basic"},
        cache_dir=cache_dir,
    )
    prepared = ort_runtime.prepare(_artifact(net), request)
    assert prepared.tags["runtime.providers"] == "CPUExecutionProvider"
    assert prepared.tags["runtime.graph_optimization_level"] == "basic"
    assert prepared.tags["runtime.intra_op_threads"] == "1"
    assert prepared.tags["runtime.onnx_source"] == "export"
    assert isinstance(prepared.make_input(2), np.ndarray)
    prepared.close()


def test_onnxruntime_runs_an_onnx_file_artifact(
    ort_runtime: OnnxRuntimeRuntime, net: torch.nn.Module, images: torch.Tensor, reference: torch.Tensor, tmp_path: Path
) -> None:
    artifact = ModelArtifact("file", INPUT_SHAPE, onnx_path=export_onnx(net, INPUT_SHAPE, tmp_path))
    prepared = ort_runtime.prepare(artifact, PrepareRequest("cpu", "fp32", (1,), INPUT_SHAPE))
    assert prepared.tags["runtime.onnx_source"] == "artifact"
    torch.testing.assert_close(prepared.predict(images), reference, rtol=1e-4, atol=1e-5)
    prepared.close()


def test_onnxruntime_lists_optimization_levels(ort_runtime: OnnxRuntimeRuntime, net: torch.nn.Module) -> None:
    with pytest.raises(ConfigError, match="disable, basic, extended, all"):
        ort_runtime.prepare(_artifact(net), _request(graph_optimization_level="max"))


def test_onnxruntime_refuses_a_gpu_provider_on_cpu(ort_runtime: OnnxRuntimeRuntime, net: torch.nn.Module) -> None:
    with pytest.raises(ConfigError, match="execution_provider='cuda'"):
        ort_runtime.prepare(_artifact(net), _request(execution_provider="cuda"))


def test_onnxruntime_int8_needs_a_qdq_file(ort_runtime: OnnxRuntimeRuntime, net: torch.nn.Module) -> None:
    with pytest.raises(UnsupportedError, match="Q/DQ ONNX"):
        ort_runtime.prepare(dynamic_int8_artifact(net), _request("int8"))


def test_onnxruntime_export_failure_names_the_operator(ort_runtime: OnnxRuntimeRuntime) -> None:
    artifact = ModelArtifact("svd", (3, 8, 8), module=SvdNet().eval())
    request = PrepareRequest("cpu", "fp32", (1,), (3, 8, 8))
    with pytest.raises(ExportError, match=r"at operator aten\._linalg_svd"):
        ort_runtime.prepare(artifact, request)


def test_onnxruntime_refuses_a_silent_cpu_fallback() -> None:
    session = types.SimpleNamespace(get_providers=lambda: ["CPUExecutionProvider"])
    with pytest.raises(UnsupportedError, match="could not load CUDAExecutionProvider"):
        OnnxRuntimeRuntime._check_provider(session, "cuda")


# --- openvino ------------------------------------------------------------------------------------------


@pytest.fixture
def ov_runtime() -> OpenVinoRuntime:
    pytest.importorskip("openvino")
    runtime = get_runtime("openvino")
    assert isinstance(runtime, OpenVinoRuntime)
    return runtime


def test_openvino_pins_f32_and_records_properties(
    ov_runtime: OpenVinoRuntime, net: torch.nn.Module, cache_dir: Path
) -> None:
    request = PrepareRequest(
        "cpu", "fp32", (2,), INPUT_SHAPE, num_threads=1, options={"performance_hint": "throughput"}, cache_dir=cache_dir
    )
    prepared = ov_runtime.prepare(_artifact(net), request)
    assert prepared.tags["openvino.inference_precision"] == "f32"
    assert prepared.tags["openvino.performance_hint"] == "THROUGHPUT"
    assert prepared.tags["openvino.num_threads"] == "1"
    assert prepared.tags["openvino.source"] == "onnx"
    prepared.close()


def test_openvino_from_torch_export(
    ov_runtime: OpenVinoRuntime, net: torch.nn.Module, images: torch.Tensor, reference: torch.Tensor
) -> None:
    prepared = ov_runtime.prepare(_artifact(net), _request(openvino_frontend="torch"))
    assert prepared.tags["openvino.source"] == "torch.export"
    torch.testing.assert_close(prepared.predict(images), reference, rtol=1e-4, atol=1e-5)
    prepared.close()


def test_openvino_refuses_a_precision_the_cpu_remaps() -> None:
    with pytest.raises(UnsupportedError, match="runs it as bf16"):
        OpenVinoRuntime._check_precision("fp16", "bf16")
    OpenVinoRuntime._check_precision("fp32", "f32")
