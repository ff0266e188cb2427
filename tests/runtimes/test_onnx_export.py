"""The shared ONNX export: dynamic batch, caching, typed graphs, fp16 conversion, operator-naming errors."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from mlperf_track.errors import ConfigError, ExportError, UnsupportedError
from mlperf_track.models.artifact import ModelArtifact
from mlperf_track.runtimes import onnx_export
from mlperf_track.runtimes.onnx_export import (
    convert_fp16,
    export_onnx,
    export_settings,
    module_digest,
    operator_from_error,
    typed_onnx,
)

from .conftest import INPUT_SHAPE, tiny_net

onnx = pytest.importorskip("onnx")
FLOAT, FLOAT16, BFLOAT16 = 1, 10, 16  # onnx.TensorProto element types


class SvdNet(torch.nn.Module):
    """Uses an operator (linalg SVD) that no ONNX exporter can translate."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.svdvals(self.conv(x)).flatten(1)


def _graph_input(path: Path) -> object:
    return onnx.load(str(path)).graph.input[0]


def _elem_type(path: Path) -> int:
    return int(onnx.load(str(path)).graph.input[0].type.tensor_type.elem_type)


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_export_has_a_dynamic_batch_axis_and_matches_torch(
    exporter: str, net: torch.nn.Module, images: torch.Tensor, reference: torch.Tensor, tmp_path: Path
) -> None:
    ort = pytest.importorskip("onnxruntime")
    path = export_onnx(net, INPUT_SHAPE, tmp_path, exporter=exporter, name="tiny")
    dims = _graph_input(path).type.tensor_type.shape.dim  # type: ignore[attr-defined]
    assert dims[0].dim_param  # symbolic batch
    assert [dim.dim_value for dim in dims[1:]] == list(INPUT_SHAPE)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (images[:1], images):
        (output,) = session.run(None, {onnx_export.INPUT_NAME: batch.numpy()})
        torch.testing.assert_close(torch.from_numpy(output), reference[: len(batch)], rtol=1e-4, atol=1e-5)


def test_export_is_cached_by_state_shape_and_opset(
    net: torch.nn.Module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = export_onnx(net, INPUT_SHAPE, tmp_path, name="tiny")
    calls: list[Path] = []

    def fake_exporter(module: torch.nn.Module, example: torch.Tensor, path: Path, opset: int, exporter: str) -> None:
        calls.append(path)
        path.write_bytes(b"onnx")

    monkeypatch.setattr(onnx_export, "_run_exporter", fake_exporter)
    assert export_onnx(copy.deepcopy(net), INPUT_SHAPE, tmp_path, name="tiny") == first
    assert calls == []
    keys = {
        export_onnx(tiny_net(seed=1), INPUT_SHAPE, tmp_path, name="tiny"),
        export_onnx(net, (3, 20, 20), tmp_path, name="tiny"),
        export_onnx(net, INPUT_SHAPE, tmp_path, name="tiny", opset=17),
    }
    assert len(calls) == 3
    assert first not in keys
    assert len(keys) == 3


def test_module_digest_follows_weights() -> None:
    net = tiny_net()
    same = copy.deepcopy(net)
    assert module_digest(net) == module_digest(same)
    with torch.no_grad():
        next(same.parameters())[0].add_(1.0)
    assert module_digest(net) != module_digest(same)


@pytest.mark.parametrize(("exporter", "operator"), [("dynamo", "aten._linalg_svd"), ("torchscript", "linalg_svd")])
def test_export_failure_names_the_operator(exporter: str, operator: str, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=rf"failed at operator \S*{operator}") as raised:
        export_onnx(SvdNet().eval(), (3, 8, 8), tmp_path, exporter=exporter, name="svd")
    assert "onnx_exporter=" in str(raised.value)  # says what to try
    assert not list(tmp_path.glob("*.onnx"))  # no half-written file left behind


@pytest.mark.parametrize(
    ("text", "operator"),
    [
        ("No ONNX function found for <OpOverload(op='aten.histc', overload='default')>", "aten.histc.default"),
        (
            "Error when translating node %x : call_function[target=torch.ops.aten.stft.default](args",
            "aten.stft.default",
        ),
        ("Exporting the operator 'aten::unique' to ONNX opset version 18 is not supported", "aten::unique"),
        ("NOT_IMPLEMENTED : Could not find an implementation for ConvInteger(10) node with name ''", "ConvInteger"),
    ],
)
def test_operator_is_found_in_exporter_and_runtime_messages(text: str, operator: str) -> None:
    try:
        try:
            raise RuntimeError(text)
        except RuntimeError as inner:
            raise ValueError("outer wrapper without details") from inner
    except ValueError as error:
        assert operator_from_error(error) == operator


def test_operator_is_none_when_not_named() -> None:
    assert operator_from_error(RuntimeError("data-dependent control flow")) is None


@pytest.mark.parametrize(("precision", "elem_type"), [("fp32", FLOAT), ("fp16", FLOAT16), ("bf16", BFLOAT16)])
def test_typed_onnx_casts_the_graph_for_strongly_typed_engines(
    precision: str, elem_type: int, net: torch.nn.Module, tmp_path: Path
) -> None:
    artifact = ModelArtifact("tiny", INPUT_SHAPE, module=net)
    path = typed_onnx(artifact, precision, tmp_path)
    model = onnx.load(str(path))
    assert model.graph.input[0].type.tensor_type.elem_type == elem_type
    assert model.graph.output[0].type.tensor_type.elem_type == elem_type
    float_weights = [t for t in model.graph.initializer if t.data_type in (FLOAT, FLOAT16, BFLOAT16)]
    assert float_weights
    assert all(t.data_type == elem_type for t in float_weights)
    assert next(net.parameters()).dtype == torch.float32  # the artifact's module is untouched


def test_typed_onnx_for_an_onnx_file_artifact(net: torch.nn.Module, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    source = export_onnx(net, INPUT_SHAPE, tmp_path, name="tiny")
    artifact = ModelArtifact("tiny-onnx", INPUT_SHAPE, onnx_path=source)
    assert typed_onnx(artifact, "fp32", tmp_path) == source
    fp16 = typed_onnx(artifact, "fp16", tmp_path)
    assert _elem_type(fp16) == FLOAT16
    assert convert_fp16(source, tmp_path) == fp16  # cached
    with pytest.raises(UnsupportedError, match="fp16"):
        typed_onnx(artifact, "bf16", tmp_path)


def test_typed_onnx_needs_a_qdq_file_for_int8(net: torch.nn.Module, tmp_path: Path) -> None:
    artifact = ModelArtifact("tiny", INPUT_SHAPE, module=net, precision="int8")
    with pytest.raises(UnsupportedError, match="Q/DQ"):
        typed_onnx(artifact, "int8", tmp_path)


def test_export_settings_are_validated() -> None:
    assert export_settings({}) == (onnx_export.DEFAULT_OPSET, "dynamo")
    assert export_settings({"onnx_opset": "17", "onnx_exporter": "torchscript"}) == (17, "torchscript")
    with pytest.raises(ConfigError, match="dynamo, torchscript"):
        export_settings({"onnx_exporter": "tracing"})
    with pytest.raises(ConfigError, match="onnx_opset"):
        export_settings({"onnx_opset": "latest"})
