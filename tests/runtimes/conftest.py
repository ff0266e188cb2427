"""Fixtures for the runtime tests: a tiny conv net, its float artifact, and int8 artifacts in each form."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mlperf_track.models.artifact import ModelArtifact

INPUT_SHAPE = (3, 16, 16)
NUM_CLASSES = 10


def tiny_net(seed: int = 0) -> torch.nn.Module:
    """Conv-BN-ReLU-Conv-ReLU-pool-Linear with non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, stride=2),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(16, NUM_CLASSES),
    )
    batch_norm = net[1]
    assert isinstance(batch_norm, torch.nn.BatchNorm2d)
    assert batch_norm.running_mean is not None
    assert batch_norm.running_var is not None
    batch_norm.running_mean.uniform_(-0.5, 0.5)
    batch_norm.running_var.uniform_(0.5, 2.0)
    return net.eval()


@pytest.fixture(scope="session")
def net() -> torch.nn.Module:
    return tiny_net()


@pytest.fixture(scope="session")
def images() -> torch.Tensor:
    """Five float32 CPU images: a batch size no case prepares, so predict must cope."""
    return torch.randn((5, *INPUT_SHAPE), generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="session")
def reference(net: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return net(images)


@dataclass(frozen=True)
class Tiny:
    """The tiny net, a batch of images and the net's eager float32 output on them."""

    net: torch.nn.Module
    images: torch.Tensor
    reference: torch.Tensor


@pytest.fixture(scope="session")
def tiny(net: torch.nn.Module, images: torch.Tensor, reference: torch.Tensor) -> Tiny:
    return Tiny(net, images, reference)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the session, so the ONNX export is shared by onnxruntime, openvino and repeated cases."""
    return tmp_path_factory.mktemp("runtime-cache")


@pytest.fixture
def float_artifact(net: torch.nn.Module) -> ModelArtifact:
    return ModelArtifact("tiny", INPUT_SHAPE, module=net, num_classes=NUM_CLASSES)


def dynamic_int8_artifact(net: torch.nn.Module) -> ModelArtifact:
    """Dynamic-quantized Linear layers (eager int8 on CPU)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated in torch 2.14 but still works
        module = torch.ao.quantization.quantize_dynamic(net, {torch.nn.Linear}, dtype=torch.qint8)
    return ModelArtifact("tiny-dynamic-int8", INPUT_SHAPE, module=module, precision="int8")


def pt2e_int8_artifact(net: torch.nn.Module) -> ModelArtifact:
    """PT2E (torchao, X86InductorQuantizer) int8 graph for the compile runtime."""
    quantize_pt2e = pytest.importorskip("torchao.quantization.pt2e.quantize_pt2e")
    x86 = pytest.importorskip("torchao.quantization.pt2e.quantizer.x86_inductor_quantizer")
    batch = torch.export.Dim("batch", min=1, max=1024)
    example = torch.randn((2, *INPUT_SHAPE))
    exported = torch.export.export(net, (example,), dynamic_shapes=({0: batch},), strict=True).module()
    quantizer = x86.X86InductorQuantizer().set_global(x86.get_default_x86_inductor_quantization_config())
    prepared = quantize_pt2e.prepare_pt2e(exported, quantizer)
    generator = torch.Generator().manual_seed(2)
    for _ in range(4):
        prepared(torch.randn((4, *INPUT_SHAPE), generator=generator))
    module = quantize_pt2e.convert_pt2e(prepared)
    return ModelArtifact("tiny-pt2e-int8", INPUT_SHAPE, module=module, precision="int8", runtime="compile")


def qdq_int8_artifact(net: torch.nn.Module, directory: Path) -> ModelArtifact:
    """A static Q/DQ int8 ONNX file made with onnxruntime.quantization (as the variants layer does)."""
    quantization = pytest.importorskip("onnxruntime.quantization")
    from mlperf_track.runtimes.onnx_export import export_onnx

    source = export_onnx(net, INPUT_SHAPE, directory, name="tiny-fp32")
    generator = torch.Generator().manual_seed(3)
    batches = iter([{"input": torch.randn((4, *INPUT_SHAPE), generator=generator).numpy()} for _ in range(4)])

    reader_base: Any = quantization.CalibrationDataReader

    class Reader(reader_base):
        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(batches, None)

    target = directory / "tiny-qdq-int8.onnx"
    quantization.quantize_static(
        str(source),
        str(target),
        Reader(),
        quant_format=quantization.QuantFormat.QDQ,
        activation_type=quantization.QuantType.QInt8,
        weight_type=quantization.QuantType.QInt8,
    )
    return ModelArtifact("tiny-qdq-int8", INPUT_SHAPE, onnx_path=target, precision="int8")
