"""Make a precision mean what its name says, and record the effective settings.

PyTorch's defaults let "fp32" convolutions on Ampere and newer GPUs run in TF32
(``torch.backends.cudnn.allow_tf32`` is True). :func:`precision_settings` pins the flags for the duration
of a case: ``tf32`` turns TF32 on for cuDNN and cuBLAS; every other precision turns it off, so fp32 is IEEE
fp32 and the fp32 parts of fp16/bf16/int8/fp8 models are not silently downgraded.

It also pins ``torch.backends.cudnn.benchmark`` (cuDNN autotuning of convolution algorithms: another kernel
choice, so other timings and other rounding), to the case's setting (default off, torch's default), whatever
the process had set, and records it as the tag ``precision.cudnn_benchmark``.

torch 2.9+ has a second API (``torch.backends.cuda.matmul.fp32_precision``); reading the legacy flags after
someone set the new one raises ``RuntimeError``. We set the legacy flags (every reader, old or new, then sees
them) and restore the state through whichever API it could be read with.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from mlperf_track.spec import PRECISIONS, check_choice

_DTYPES: dict[str, torch.dtype | None] = {
    "fp32": torch.float32,
    "tf32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
    "int8": None,
    "fp8": None,
}


def dtype_for(precision: str) -> torch.dtype | None:
    """The floating-point dtype of a precision's tensors, or ``None`` for quantized precisions (int8, fp8)."""
    check_choice("precision", precision, PRECISIONS)
    return _DTYPES[precision]


def _snapshot() -> tuple[str, dict[str, Any]]:
    backends = torch.backends
    try:
        return "legacy", {
            "cudnn": backends.cudnn.allow_tf32,
            "matmul": backends.cuda.matmul.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "cudnn_benchmark": backends.cudnn.benchmark,
        }
    except RuntimeError:  # the new API was used: legacy reads refuse, so save the new-API strings
        return "new", {
            "cudnn": getattr(backends.cudnn, "conv").fp32_precision,  # noqa: B009 - untyped submodule
            "matmul": backends.cuda.matmul.fp32_precision,
            "cudnn_benchmark": backends.cudnn.benchmark,
        }


def _restore(api: str, state: dict[str, Any]) -> None:
    backends = torch.backends
    backends.cudnn.benchmark = state["cudnn_benchmark"]
    if api == "legacy":
        backends.cudnn.allow_tf32 = state["cudnn"]
        backends.cuda.matmul.allow_tf32 = state["matmul"]
        torch.set_float32_matmul_precision(state["float32_matmul_precision"])
    else:
        getattr(backends.cudnn, "conv").fp32_precision = state["cudnn"]  # noqa: B009 - untyped submodule
        backends.cuda.matmul.fp32_precision = state["matmul"]


def _apply(tf32: bool) -> None:
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")


def effective_tags(precision: str) -> dict[str, str]:
    """The current TF32 and cuDNN autotuning flags and the precision's dtype as tags."""
    dtype = dtype_for(precision)
    return {
        "precision.dtype": str(dtype).removeprefix("torch.") if dtype is not None else precision,
        "precision.cudnn_allow_tf32": str(torch.backends.cudnn.allow_tf32).lower(),
        "precision.matmul_allow_tf32": str(torch.backends.cuda.matmul.allow_tf32).lower(),
        "precision.float32_matmul_precision": torch.get_float32_matmul_precision(),
        "precision.cudnn_benchmark": str(torch.backends.cudnn.benchmark).lower(),
    }


@contextlib.contextmanager
def precision_settings(precision: str, device: str, *, cudnn_benchmark: bool = False) -> Iterator[dict[str, str]]:
    """Pin TF32, float32 matmul precision and cuDNN autotuning for the case and restore them afterwards.

    Args:
        precision: One of :data:`mlperf_track.spec.PRECISIONS`.
        device: ``cpu`` or ``cuda``; recorded as a tag (the flags are process-wide and set on both).
        cudnn_benchmark: The value of ``torch.backends.cudnn.benchmark`` during the case.

    Yields:
        Tags with the effective settings: ``precision.dtype``, ``precision.cudnn_allow_tf32``,
        ``precision.matmul_allow_tf32``, ``precision.float32_matmul_precision``, ``precision.cudnn_benchmark``,
        ``precision.device``.

    Raises:
        ConfigError: For an unknown precision.
    """
    check_choice("precision", precision, PRECISIONS)
    api, state = _snapshot()
    try:
        _apply(tf32=precision == "tf32")
        torch.backends.cudnn.benchmark = cudnn_benchmark
        tags = effective_tags(precision)
        tags["precision.device"] = device
        yield tags
    finally:
        _restore(api, state)


#: CPU half-precision types and the oneDNN probe that says whether the CPU computes them natively.
_CPU_NATIVE_PROBES = {"bf16": "_is_mkldnn_bf16_supported", "fp16": "_is_mkldnn_fp16_supported"}
_CPU_UNITS = {"bf16": "AVX512-BF16 or AMX-BF16", "fp16": "AVX512-FP16 or AMX-FP16"}


def emulated_reason(precision: str, device: str) -> str | None:
    """Why ``precision`` would only be emulated on ``device`` (no native kernels), or ``None`` when it is native.

    A CPU computes bf16/fp16 natively only with the units oneDNN reports (AVX512-BF16/AMX for bf16,
    AVX512-FP16/AMX-FP16 for fp16); without them PyTorch converts every operation, which measured 3.4x slower
    than fp32 for fp16 on this project's CI CPU. A GPU runs bf16 natively from compute capability 8.0. Other
    precisions are native wherever a runtime declares them.
    """
    if device == "cpu" and precision in _CPU_NATIVE_PROBES:
        probe = getattr(torch.ops.mkldnn, _CPU_NATIVE_PROBES[precision], None)
        try:
            native = bool(torch.backends.mkldnn.is_available() and probe is not None and probe())
        except RuntimeError:
            native = False
        return None if native else f"this CPU has no native {precision} compute ({_CPU_UNITS[precision]})"
    cuda_bf16 = device.startswith("cuda") and precision == "bf16" and torch.cuda.is_available()
    if cuda_bf16 and not torch.cuda.is_bf16_supported(including_emulation=False):
        return "this GPU has no native bf16 (needs compute capability 8.0+)"
    return None
