"""Quantization recipes hold what they claim: int8 graphs and QDQ nodes, half-precision weights."""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from pathlib import Path

import pytest
import torch
from torch import nn

from mlperf_track.data.base import DatasetSplits
from mlperf_track.engine.accuracy import evaluate_accuracy, module_predictor
from mlperf_track.errors import ConfigError, UnsupportedError
from mlperf_track.models.artifact import ModelArtifact
from mlperf_track.variants.base import VariantContext
from mlperf_track.variants.quantize_half import Fp16Variant, _mkldnn_supports
from mlperf_track.variants.registry import get_variant


def _graph_ops(module: nn.Module) -> set[str]:
    assert isinstance(module, torch.fx.GraphModule)
    return {str(node.target) for node in module.graph.nodes if node.op == "call_function"}


def _constants(module: torch.fx.GraphModule) -> list[torch.Tensor]:
    return [attrgetter(str(node.target))(module) for node in module.graph.nodes if node.op == "get_attr"]


def test_pt2e_graph_holds_int8_weights_and_quantize_ops(built_variants: Callable[[str], ModelArtifact]) -> None:
    artifact = built_variants("quantized_int8_pt2e")
    assert artifact.precision == "int8" and artifact.runtime == "compile"
    module = artifact.module
    assert isinstance(module, torch.fx.GraphModule)
    ops = _graph_ops(module)
    assert "quantized_decomposed.quantize_per_tensor.default" in ops
    assert "quantized_decomposed.dequantize_per_tensor.default" in ops
    assert "quantized_decomposed.dequantize_per_channel.default" in ops
    int8_weights = [tensor for tensor in _constants(module) if tensor.dtype == torch.int8]
    # tinycnn: three convs and the Linear head, each with an int8 per-channel weight.
    assert sorted(tuple(weight.shape) for weight in int8_weights) == [
        (10, 32),
        (16, 3, 3, 3),
        (24, 16, 3, 3),
        (32, 24, 3, 3),
    ]
    module.eval()  # runtimes call eval(); exported graphs refuse it unless allowed
    # The fp32 weights that the int8 constants replaced are gone, not carried along as dead weight.
    assert not [name for name, value in module.state_dict().items() if value.is_floating_point() and value.dim() >= 2]
    assert artifact.tags["quant.int8_weights"] == str(sum(weight.numel() for weight in int8_weights))
    assert artifact.tags["quant.calibration_samples"] == "256"


def test_pt2e_calibrates_on_random_images_without_a_training_split(
    tiny_baseline: ModelArtifact, make_context: Callable[..., VariantContext], synthetic_data: DatasetSplits
) -> None:
    context = make_context(synthetic_data, calibration_samples="40")
    artifact = get_variant("quantized_int8_pt2e").build(tiny_baseline, context)
    assert artifact.tags["quant.calibration_data"] == "random"
    assert artifact.tags["quant.calibration_samples"] == "40"
    assert module_predictor(artifact.module)(torch.randn(3, *artifact.input_shape)).shape == (3, 10)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["0", "-5", "many"])
def test_bad_calibration_samples_is_a_config_error(
    value: str, tiny_baseline: ModelArtifact, make_context: Callable[..., VariantContext]
) -> None:
    with pytest.raises(ConfigError, match="calibration_samples"):
        get_variant("quantized_int8_pt2e").build(tiny_baseline, make_context(calibration_samples=value))


@pytest.mark.slow
def test_pt2e_runs_as_int8_under_torch_compile(
    built_variants: Callable[[str], ModelArtifact], tiny_baseline: ModelArtifact, digits_small: DatasetSplits
) -> None:
    artifact = built_variants("quantized_int8_pt2e")
    assert artifact.module is not None and digits_small.val is not None
    with torch._inductor.config.patch(freezing=True), torch.no_grad():
        compiled = torch.compile(artifact.module)
        images = torch.stack([digits_small.val[index][0] for index in range(16)])
        eager = artifact.module(images)
        fast = compiled(images)
    torch._dynamo.reset()
    assert torch.allclose(fast, eager, atol=0.1)
    reference = tiny_baseline.module(images)  # type: ignore[misc]
    assert (fast.argmax(1) == reference.argmax(1)).float().mean() >= 0.8


def test_ort_model_has_per_channel_qdq_nodes(built_variants: Callable[[str], ModelArtifact]) -> None:
    import onnx
    from onnx import numpy_helper

    artifact = built_variants("quantized_int8_ort")
    assert artifact.module is None and artifact.onnx_path is not None and artifact.onnx_path.is_file()
    assert artifact.precision == "int8" and artifact.runtime == "onnxruntime"
    graph = onnx.load(str(artifact.onnx_path)).graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    op_types = [node.op_type for node in graph.node]
    assert op_types.count("QuantizeLinear") >= 3 and op_types.count("DequantizeLinear") >= 4
    per_channel = []
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in initializers:
            continue
        weight = initializers[node.input[0]]
        scale = numpy_helper.to_array(initializers[node.input[1]])
        if weight.data_type == onnx.TensorProto.INT8 and len(weight.dims) == 4:
            axis = next((attribute.i for attribute in node.attribute if attribute.name == "axis"), 1)
            assert axis == 0
            assert scale.shape == (weight.dims[0],)  # one scale per output channel
            per_channel.append(tuple(weight.dims))
    assert sorted(per_channel) == [(16, 3, 3, 3), (24, 16, 3, 3), (32, 24, 3, 3)]


def test_ort_int8_runs_in_onnxruntime(
    built_variants: Callable[[str], ModelArtifact],
    onnx_predict: Callable[[Path], Callable[[torch.Tensor], torch.Tensor]],
) -> None:
    artifact = built_variants("quantized_int8_ort")
    assert artifact.onnx_path is not None
    for batch in (1, 5):
        assert onnx_predict(artifact.onnx_path)(torch.randn(batch, *artifact.input_shape)).shape == (batch, 10)


def test_dynamic_int8_replaces_linear_layers(built_variants: Callable[[str], ModelArtifact]) -> None:
    artifact = built_variants("quantized_int8_dynamic")
    assert artifact.module is not None
    kinds = {type(layer) for layer in artifact.module.modules()}
    assert torch.ao.nn.quantized.dynamic.Linear in kinds and nn.Linear not in kinds
    assert artifact.precision == "int8" and artifact.runtime == "eager"
    assert artifact.tags["quant.quantized_layers"] == "1"
    assert 0 < float(artifact.tags["quant.quantized_param_fraction"]) < 0.1


def test_dynamic_int8_needs_linear_layers(make_context: Callable[..., VariantContext]) -> None:
    convs = nn.Sequential(nn.Conv2d(3, 10, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    baseline = ModelArtifact(name="convs", input_shape=(3, 16, 16), module=convs, num_classes=10)
    with pytest.raises(UnsupportedError, match=r"no nn\.Linear"):
        get_variant("quantized_int8_dynamic").build(baseline, make_context())


@pytest.mark.parametrize(("name", "dtype"), [("quantized_bf16", torch.bfloat16), ("quantized_fp16", torch.float16)])
def test_half_precision_casts_every_float_tensor(
    name: str, dtype: torch.dtype, built_variants: Callable[[str], ModelArtifact]
) -> None:
    artifact = built_variants(name)
    assert artifact.module is not None
    tensors = [*artifact.module.parameters(), *artifact.module.buffers()]
    assert all(tensor.dtype == dtype for tensor in tensors if tensor.is_floating_point())
    assert artifact.precision == name.removeprefix("quantized_") and artifact.runtime is None


def test_fp16_availability_follows_the_cpu() -> None:
    reason = Fp16Variant().unavailable_reason("cpu")
    if _mkldnn_supports("_is_mkldnn_fp16_supported"):
        assert reason is None
    else:
        assert reason is not None and "emulated" in reason


def test_pruned_then_quantized_composes(
    built_variants: Callable[[str], ModelArtifact], digits_small: DatasetSplits
) -> None:
    artifact = built_variants("pruned_structured+quantized_int8_pt2e")
    assert artifact.precision == "int8" and artifact.runtime == "compile"
    assert int(artifact.tags["prune.params_after"]) < int(artifact.tags["prune.params_before"])
    int8_convs = [tensor for tensor in _constants(artifact.module) if tensor.dtype == torch.int8 and tensor.dim() == 4]  # type: ignore[arg-type]
    assert int8_convs and int8_convs[0].shape[0] < 16  # the first conv lost channels, then became int8
    assert digits_small.val is not None
    assert evaluate_accuracy(module_predictor(artifact.module), digits_small.val).samples == 96  # type: ignore[arg-type]


def test_nothing_follows_a_pinned_step(
    tiny_baseline: ModelArtifact, make_context: Callable[..., VariantContext]
) -> None:
    with pytest.raises(UnsupportedError, match="quantized_int8_ort must come last"):
        get_variant("quantized_int8_ort+pruned_unstructured").build(tiny_baseline, make_context())
