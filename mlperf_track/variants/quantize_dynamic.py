"""``quantized_int8_dynamic``: int8 weights with dynamically quantized activations, for Linear-heavy models.

Uses ``torch.ao.quantization.quantize_dynamic`` (fbgemm/x86 int8 GEMM kernels, fast in eager mode). It is
deprecated in torch 2.14 in favour of torchao's ``quantize_(model, Int8DynamicActivationInt8WeightConfig())``,
but measured on this project's CI CPU (768x3072 MLP, batch 64) torchao's version is 13x *slower* than fp32 in
eager mode and needs torch.compile to be fast, while the torch.ao one is faster than fp32 in eager. Only
``nn.Linear`` layers are quantized, so on a conv net this touches the classifier alone: the tag
``quant.quantized_param_fraction`` says how much of the model changed.
"""

from __future__ import annotations

import logging
import warnings

import torch
from torch import nn

from mlperf_track.errors import UnsupportedError
from mlperf_track.models.artifact import ModelArtifact
from mlperf_track.variants.base import Variant, VariantContext
from mlperf_track.variants.common import copy_module, count_params, derive

logger = logging.getLogger(__name__)

#: Below this fraction of parameters in Linear layers, the build logs that little will change.
SMALL_FRACTION = 0.1


def _quantize_dynamic() -> object | None:
    quantization = getattr(torch.ao, "quantization", None)
    return getattr(quantization, "quantize_dynamic", None)


class DynamicInt8Variant(Variant):
    """Dynamic int8 quantization of every ``nn.Linear``; eager runtime on CPU."""

    name = "quantized_int8_dynamic"
    pinned_precision = "int8"
    pinned_runtime = "eager"
    workloads = frozenset({"image", "tokens", "generation"})

    def unavailable_reason(self, device: str) -> str | None:
        """CPU only (the quantized kernels are fbgemm/x86 CPU kernels)."""
        if device != "cpu":
            return f"dynamic int8 (torch.ao quantize_dynamic) has CPU kernels only, not {device} ones"
        if _quantize_dynamic() is None:
            return f"torch {torch.__version__} no longer has torch.ao.quantization.quantize_dynamic"
        return None

    def build(self, baseline: ModelArtifact, context: VariantContext) -> ModelArtifact:
        """Quantize the Linear layers of a copy of the baseline.

        Raises:
            UnsupportedError: The model has no ``nn.Linear`` layer.
        """
        module = copy_module(baseline, self.name)
        linears = [layer for layer in module.modules() if isinstance(layer, nn.Linear)]
        if not linears:
            raise UnsupportedError(
                "variant", self.name, hint=f"{baseline.name} has no nn.Linear layers; use quantized_int8_pt2e"
            )
        fraction = sum(count_params(layer) for layer in linears) / max(count_params(module), 1)
        if fraction < SMALL_FRACTION:
            logger.warning(
                "%s: only %.2g%% of %s's parameters are in Linear layers; dynamic int8 changes little",
                self.name,
                100 * fraction,
                baseline.name,
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            quantized = torch.ao.quantization.quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8)
        tags = {
            "quant.method": "dynamic (torch.ao quantize_dynamic)",
            "quant.weights": "int8 per-tensor",
            "quant.activations": "int8 dynamic, per batch",
            "quant.quantized_layers": str(len(linears)),
            "quant.quantized_param_fraction": f"{fraction:.4f}",
        }
        return derive(baseline, self.name, quantized, tags, precision="int8", runtime="eager", device="cpu")
