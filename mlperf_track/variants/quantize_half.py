"""``quantized_fp16`` and ``quantized_bf16``: the whole model cast to half precision.

Whether a device has fast half-precision kernels decides availability: on a CPU, bf16 needs AVX512-BF16 or
AMX (oneDNN reports it) and fp16 needs AVX512-FP16 or AMX-FP16. Without them PyTorch emulates the type;
measured on this project's CI CPU (AVX512-BF16, no AVX512-FP16), resnet18 in fp16 ran 3.4x slower than fp32
while bf16 ran 3x faster, so an emulated fp16 is reported as unavailable rather than benchmarked.
"""

from __future__ import annotations

import torch

from mlperf_track.models.artifact import ModelArtifact
from mlperf_track.variants.base import Variant, VariantContext
from mlperf_track.variants.common import copy_module, derive


def _mkldnn_supports(check: str) -> bool:
    probe = getattr(torch.ops.mkldnn, check, None)
    try:
        return bool(torch.backends.mkldnn.is_available() and probe is not None and probe())
    except RuntimeError:
        return False


class _HalfVariant(Variant):
    """Built on the CPU like every recipe; the runtime moves it to the case's device (it pins no device)."""

    workloads = frozenset({"image", "tokens", "generation"})
    precision: str
    dtype: torch.dtype
    cpu_check: str
    cpu_feature: str

    def unavailable_reason(self, device: str) -> str | None:
        """Available where the device has native kernels for the type."""
        if device == "cuda":
            if self.dtype == torch.bfloat16 and not (torch.cuda.is_available() and torch.cuda.is_bf16_supported()):
                return "this GPU has no bf16 support (needs compute capability 8.0+)"
            return None
        if not _mkldnn_supports(self.cpu_check):
            return f"this CPU has no native {self.precision} compute ({self.cpu_feature}); it would be emulated"
        return None

    def build(self, baseline: ModelArtifact, context: VariantContext) -> ModelArtifact:
        """A copy of the baseline with every floating-point parameter and buffer cast; pinned to the precision."""
        module = copy_module(baseline, self.name).to(self.dtype)
        tags = {"quant.method": f"cast to {self.precision}", "quant.dtype": str(self.dtype).removeprefix("torch.")}
        return derive(baseline, self.name, module, tags, precision=self.precision)


class Fp16Variant(_HalfVariant):
    """The model in float16."""

    name = "quantized_fp16"
    pinned_precision = "fp16"
    precision = "fp16"
    dtype = torch.float16
    cpu_check = "_is_mkldnn_fp16_supported"
    cpu_feature = "AVX512-FP16 or AMX-FP16"


class Bf16Variant(_HalfVariant):
    """The model in bfloat16."""

    name = "quantized_bf16"
    pinned_precision = "bf16"
    precision = "bf16"
    dtype = torch.bfloat16
    cpu_check = "_is_mkldnn_bf16_supported"
    cpu_feature = "AVX512-BF16 or AMX-BF16"
