"""``quantized_int8_weight_only`` and ``quantized_int4_weight_only``: torchao weight-only quantization of the
``nn.Linear`` layers of a text model, where the device has the kernels.

Weight-only quantization stores the weights in int8 (per output channel) or int4 (groups of 128 along the
input) and computes in floating point, which is what matters for generation: a decode step is bound by
reading the weights, not by arithmetic. torchao's ``quantize_`` swaps the weights for tensor subclasses
(``Int8WeightOnlyConfig``, ``Int4WeightOnlyConfig``); the model then runs under eager or ``torch.compile``
(which fuses the dequantization into the matmul). Whether a device has the kernels is found by quantizing and
running a small ``Linear`` there once (measured here: int4 has no CPU kernel in torchao 0.18, it needs its
GPU packing or an extra kernel package), so a recipe the device cannot run is refused up front.

The artifact is built on, and pinned to, the case's device (the quantized tensors are laid out for it), to
the precision its activations compute in (fp32 for int8 weight-only, bf16 for int4, whose kernels take bf16)
and to the ``compile`` runtime: torchao's tensor subclasses neither export to ONNX nor run fast unfused
(eager dequantizes every weight at every call), and Inductor fuses the dequantization into the matmul.
"""

from __future__ import annotations

import functools
import logging
import warnings
from importlib.util import find_spec
from typing import Any, ClassVar

import torch
from torch import nn

from mlperf_track.errors import MissingDependencyError, UnsupportedError
from mlperf_track.models.artifact import ModelArtifact
from mlperf_track.variants.base import Variant, VariantContext
from mlperf_track.variants.common import copy_module, count_params, derive

logger = logging.getLogger(__name__)


def _config(bits: int, device: str) -> Any:
    try:
        from torchao.quantization import Int4WeightOnlyConfig, Int8WeightOnlyConfig
    except ImportError as error:
        raise MissingDependencyError("torchao", "quantize", "torchao weight-only quantization") from error
    if bits == 8:
        return Int8WeightOnlyConfig()
    packing = "tile_packed_to_4d" if device == "cuda" else "plain"
    return Int4WeightOnlyConfig(group_size=128, int4_packing_format=packing)


def _quantize(module: nn.Module, bits: int, device: str) -> None:
    from torchao.quantization import quantize_

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_(module, _config(bits, device))


@functools.cache
def kernel_missing(bits: int, device: str, dtype: torch.dtype) -> str | None:
    """``None`` when torchao quantizes and runs a Linear with ``bits``-bit weights on ``device``, else why not."""
    if find_spec("torchao") is None:
        return "needs torchao: pip install 'mlperf-track[quantize]'"
    if device == "cuda" and not torch.cuda.is_available():
        return "no CUDA device"
    try:
        probe = nn.Sequential(nn.Linear(256, 256)).to(device=device, dtype=dtype).eval()
        _quantize(probe, bits, device)
        with torch.inference_mode():
            probe(torch.randn(2, 256, device=device, dtype=dtype))
    except Exception as error:  # torchao raises ImportError/ValueError/RuntimeError/NotImplementedError
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        return f"torchao has no int{bits} weight-only kernel for {device} here ({type(error).__name__}: {first})"
    return None


class _WeightOnly(Variant):
    extra: ClassVar[str | None] = "quantize"
    pinned_runtime: ClassVar[str | None] = "compile"
    workloads: ClassVar[frozenset[str]] = frozenset({"tokens", "generation"})
    bits: ClassVar[int]
    dtype: ClassVar[torch.dtype]

    def unavailable_reason(self, device: str) -> str | None:
        """Where torchao has a kernel for the weights on ``device`` (probed once per process)."""
        return kernel_missing(self.bits, device, self.dtype)

    def build(self, baseline: ModelArtifact, context: VariantContext) -> ModelArtifact:
        """Quantize the Linear layers of a copy of the baseline, on the case's device.

        Raises:
            UnsupportedError: The model has no ``nn.Linear`` layer.
        """
        module = copy_module(baseline, self.name).to(device=context.device, dtype=self.dtype)
        linears = [layer for layer in module.modules() if isinstance(layer, nn.Linear)]
        if not linears:
            raise UnsupportedError("variant", self.name, hint=f"{baseline.name} has no nn.Linear layers")
        fraction = sum(count_params(layer) for layer in linears) / max(count_params(module), 1)
        _quantize(module, self.bits, context.device)
        tags = {
            "quant.method": f"torchao weight-only int{self.bits} (quantize_)",
            "quant.weights": "int8 per output channel" if self.bits == 8 else "int4, groups of 128",
            "quant.activations": f"{str(self.dtype).removeprefix('torch.')} (not quantized)",
            "quant.quantized_layers": str(len(linears)),
            "quant.quantized_param_fraction": f"{fraction:.4f}",
        }
        precision = "fp32" if self.dtype == torch.float32 else "bf16"
        return derive(
            baseline, self.name, module.eval(), tags, precision=precision, runtime="compile", device=context.device
        )


class Int8WeightOnlyVariant(_WeightOnly):
    """int8 weights (per output channel), fp32 activations."""

    name = "quantized_int8_weight_only"
    pinned_precision = "fp32"
    bits = 8
    dtype = torch.float32


class Int4WeightOnlyVariant(_WeightOnly):
    """int4 weights (groups of 128), bf16 activations."""

    name = "quantized_int4_weight_only"
    pinned_precision = "bf16"
    bits = 4
    dtype = torch.bfloat16
