"""model_facts on tiny nets: exact params, hand-computed FLOPs, size, sparsity, quantized and ONNX cases."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from mlperf_track import metrics as m
from mlperf_track.engine.facts import count_params, model_facts, sparsity


class TinyConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, kernel_size=3, padding=1)  # 4*3*3*3 + 4 = 112
        self.bn = nn.BatchNorm2d(4)  # 4 + 4 = 8 (running stats are buffers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 10)  # 40 + 10 = 50

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(torch.relu(self.bn(self.conv(x)))), 1))


def test_conv_net_params_size_and_flops() -> None:
    net = TinyConvNet().eval()
    metrics, notes = model_facts(net, torch.randn(5, 3, 8, 8))
    assert metrics[m.MODEL_PARAMS] == 112 + 8 + 50
    # conv: 2 * (8*8 outputs * 4 channels) * (3*3*3) MACs; fc: 2 * 4 * 10
    assert metrics[m.MODEL_FLOPS] == 2 * 8 * 8 * 4 * 27 + 2 * 4 * 10
    assert 170 * 4 / 1024**2 < metrics[m.MODEL_SIZE] < 0.1
    assert m.MODEL_SPARSITY not in metrics and notes == {}


def test_linear_flops_per_sample_do_not_depend_on_batch() -> None:
    layer = nn.Linear(16, 8)
    one, _ = model_facts(layer, torch.randn(1, 16))
    many, _ = model_facts(layer, torch.randn(32, 16))
    assert one[m.MODEL_FLOPS] == many[m.MODEL_FLOPS] == 2 * 16 * 8


def test_sparsity_counts_zero_weights_and_pruning_masks() -> None:
    layer = nn.Linear(10, 10)
    with torch.no_grad():
        layer.weight[:, :3] = 0
    assert sparsity(layer) == pytest.approx(0.3)
    metrics, _ = model_facts(layer, None)
    assert metrics[m.MODEL_SPARSITY] == pytest.approx(0.3)

    pruned = nn.Linear(10, 10)
    prune.l1_unstructured(pruned, "weight", amount=0.5)  # weight_orig stays dense
    assert sparsity(pruned) == pytest.approx(0.5)
    assert count_params(pruned) == 110


def test_quantized_module_counts_packed_weights_and_notes_flops() -> None:
    model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    assert list(quantized.parameters()) == []
    metrics, notes = model_facts(quantized, torch.randn(2, 16))
    assert metrics[m.MODEL_PARAMS] == 16 * 8 + 8 + 8 * 4 + 4
    assert m.MODEL_FLOPS not in metrics and "no countable ops" in notes[m.MODEL_FLOPS]


def test_flop_counting_failure_is_a_note() -> None:
    metrics, notes = model_facts(nn.Linear(16, 8), torch.randn(2, 5))
    assert m.MODEL_FLOPS not in metrics and "FLOP counting failed" in notes[m.MODEL_FLOPS]
    assert metrics[m.MODEL_PARAMS] == 136


def test_nothing_given_gives_notes() -> None:
    metrics, notes = model_facts(None, None)
    assert metrics == {}
    assert {m.MODEL_PARAMS, m.MODEL_SIZE, m.MODEL_FLOPS} <= set(notes)


def test_onnx_file_defines_size_and_params(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(torch.randn(4, 3).numpy(), name="W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        initializer=[weight],
    )
    path = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(graph), str(path))
    metrics, notes = model_facts(None, None, onnx_path=path)
    assert metrics[m.MODEL_PARAMS] == 12
    assert metrics[m.MODEL_SIZE] == pytest.approx(path.stat().st_size / 1024**2)
    assert "only a model file" in notes[m.MODEL_FLOPS]


def test_int8_weight_buffers_of_converted_graphs_are_counted() -> None:
    """PT2E-converted graphs keep int8 weights as buffers; they are weights all the same."""

    class Converted(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("_frozen_param0", torch.zeros(8, 3, 3, 3, dtype=torch.int8))
            self.register_buffer("_scale_0", torch.ones(8))
            self.bias = nn.Parameter(torch.zeros(8))

    assert count_params(Converted()) == 8 * 3 * 3 * 3 + 8


def test_size_at_a_precision_counts_the_bytes_of_that_dtype() -> None:
    from mlperf_track.engine.facts import state_dict_bytes

    module = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.BatchNorm1d(256))
    fp32, fp16 = state_dict_bytes(module), state_dict_bytes(module, torch.float16)
    assert state_dict_bytes(module, torch.float32) == fp32
    floats = sum(t.numel() for t in module.state_dict().values() if t.is_floating_point())
    assert abs((fp32 - fp16) - 2 * floats) < 512  # two bytes fewer per float (and the zip records' padding)
    assert module[0].weight.dtype == torch.float32  # the module itself is untouched
