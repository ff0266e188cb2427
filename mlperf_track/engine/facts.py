"""Static facts about a model: parameter count, serialized size, forward FLOPs per sample, weight sparsity.

* Parameters count ``module.parameters()`` plus weights that quantized modules keep packed (eager-mode
  quantized ``Linear``/``Conv`` expose them through a ``weight()`` method, not as parameters) and the int8
  weight buffers of PT2E-converted graphs (``_frozen_param*``: weights stored as buffers, not parameters).
* Size is the serialized size of what is deployed: the ONNX file (plus its external-data files) when one is
  given, else ``torch.save(module.state_dict())`` into memory, at the precision the case runs in when the
  caller gives one (:func:`state_dict_bytes`). "MB" is MiB (2**20 bytes) everywhere.
* FLOPs are counted by :class:`torch.utils.flop_counter.FlopCounterMode` on a batch of one: 2 x the
  multiply-accumulates of matmuls, convolutions and attention; elementwise ops are not counted. Quantized
  kernels are invisible to it, so a count of zero is left out with a note rather than reported.
* Sparsity is the fraction of exactly-zero entries in weight tensors (2-D and up), reported only when
  nonzero; for ``torch.nn.utils.prune`` modules the masked weight is used, not ``weight_orig``.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from mlperf_track import metrics as m
from mlperf_track.engine.monitors.base import BYTES_PER_MB

logger = logging.getLogger(__name__)

#: Buffer dtypes that hold quantized weights (PT2E ``convert_pt2e`` output keeps int8 weights as buffers).
_QUANTIZED_WEIGHT_DTYPES = (torch.int8, torch.uint8)


def _weights(module: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """Every weight tensor once: parameters (masked ones for pruned modules) and packed quantized weights."""
    for name, sub in module.named_modules():
        for pname, param in sub.named_parameters(recurse=False):
            masked = getattr(sub, pname.removesuffix("_orig"), None) if pname.endswith("_orig") else None
            yield f"{name}.{pname}", masked if isinstance(masked, torch.Tensor) else param
        packed_weight = getattr(sub, "weight", None)
        if callable(packed_weight) and not isinstance(packed_weight, (torch.Tensor, nn.Module)):
            yield f"{name}.weight()", packed_weight()
            packed_bias = getattr(sub, "bias", None)
            bias = packed_bias() if callable(packed_bias) else None
            if isinstance(bias, torch.Tensor):
                yield f"{name}.bias()", bias
        for bname, buffer in sub.named_buffers(recurse=False):
            if buffer.dtype in _QUANTIZED_WEIGHT_DTYPES and buffer.dim() >= 2:
                yield f"{name}.{bname}", buffer


def count_params(module: nn.Module) -> int:
    """Number of weights, including packed quantized ones."""
    return sum(tensor.numel() for _, tensor in _weights(module))


def sparsity(module: nn.Module) -> float | None:
    """Fraction of exactly-zero entries in weight tensors of 2 or more dimensions (``None``: no such weights)."""
    zeros = total = 0
    for _, tensor in _weights(module):
        if tensor.dim() < 2:
            continue
        values = tensor.detach()
        try:
            if values.is_quantized:
                values = values.dequantize()
            zeros += int((values == 0).sum().item())
        except (RuntimeError, NotImplementedError, TypeError) as error:  # exotic tensor subclasses
            logger.debug("sparsity left out: cannot compare a %s weight with 0 (%s)", type(tensor).__name__, error)
            return None
        total += values.numel()
    return zeros / total if total else None


def state_dict_bytes(module: nn.Module, dtype: torch.dtype | None = None) -> int:
    """Bytes of ``torch.save(module.state_dict())``, with floating-point tensors cast to ``dtype`` when given.

    The cast gives the size of the model as a runtime holds it at a precision (fp16 weights take half the
    bytes of fp32 ones); integer and quantized tensors keep their type.
    """
    state = module.state_dict()  # a new dict on every call: replacing its entries leaves the module alone
    if dtype is not None:
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                state[key] = value.to(dtype)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.tell()


def flops_per_sample(module: nn.Module, example_input: torch.Tensor) -> float:
    """Forward FLOPs of one sample (``FlopCounterMode`` on the first sample of ``example_input``).

    ``torch.compile`` wrappers are unwrapped: compilation fuses kernels but does not change the arithmetic.
    """
    from torch.utils.flop_counter import FlopCounterMode

    target = getattr(module, "_orig_mod", module)
    sample = example_input[:1] if example_input.dim() > 0 else example_input
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        target(sample)
    return float(counter.get_total_flops())


def _onnx_facts(path: Path, metrics: dict[str, float], notes: dict[str, str]) -> None:
    """Size (file plus external data) and initializer element count of an ONNX file."""
    try:
        import onnx
    except ImportError:
        metrics[m.MODEL_SIZE] = path.stat().st_size / BYTES_PER_MB
        notes[m.MODEL_PARAMS] = "reading ONNX initializers needs the package onnx: pip install 'mlperf-track[onnx]'"
        return
    model = onnx.load(str(path), load_external_data=False)
    files = {path.resolve()}
    params = 0
    for init in model.graph.initializer:
        count = 1
        for dim in init.dims:
            count *= int(dim)
        params += count
        if init.data_location == onnx.TensorProto.EXTERNAL:
            location = next((e.value for e in init.external_data if e.key == "location"), None)
            if location:
                files.add((path.parent / location).resolve())
    metrics[m.MODEL_SIZE] = sum(f.stat().st_size for f in files if f.exists()) / BYTES_PER_MB
    metrics[m.MODEL_PARAMS] = float(params)


def _flops_fact(
    module: nn.Module, example_input: torch.Tensor, metrics: dict[str, float], notes: dict[str, str]
) -> None:
    try:
        flops = flops_per_sample(module, example_input)
    except Exception as error:  # any forward failure means "unknown", never a made-up number
        notes[m.MODEL_FLOPS] = f"FLOP counting failed ({type(error).__name__}: {error})"
        logger.info("FLOPs left out: %s", notes[m.MODEL_FLOPS])
        return
    if flops > 0:
        metrics[m.MODEL_FLOPS] = flops
    else:
        notes[m.MODEL_FLOPS] = "FlopCounterMode saw no countable ops (quantized or custom kernels are invisible to it)"


def model_facts(
    module: nn.Module | None, example_input: torch.Tensor | None, onnx_path: Path | None = None
) -> tuple[dict[str, float], dict[str, str]]:
    """Parameters, serialized size, FLOPs per sample and sparsity of a model.

    Args:
        module: The torch module, or ``None`` when only a file exists.
        example_input: An input batch on the module's device (only its first sample is run).
        onnx_path: The ONNX file the runtime loads; when given, it defines ``model/size_mb``.

    Returns:
        ``(metrics, notes)``: metrics keyed by ``model/*`` names, and for each absent one a note saying why.
    """
    metrics: dict[str, float] = {}
    notes: dict[str, str] = {}
    if onnx_path is not None:
        _onnx_facts(Path(onnx_path), metrics, notes)
    if module is not None:
        metrics[m.MODEL_PARAMS] = float(count_params(module))
        notes.pop(m.MODEL_PARAMS, None)
        if m.MODEL_SIZE not in metrics:
            metrics[m.MODEL_SIZE] = state_dict_bytes(module) / BYTES_PER_MB
        zero_fraction = sparsity(module)
        if zero_fraction:
            metrics[m.MODEL_SPARSITY] = zero_fraction
        if example_input is not None:
            _flops_fact(module, example_input, metrics, notes)
        else:
            notes[m.MODEL_FLOPS] = "no example input was given to count FLOPs with"
    else:
        notes[m.MODEL_FLOPS] = "no torch module to count FLOPs on (only a model file)"
        if onnx_path is None:
            notes[m.MODEL_PARAMS] = notes[m.MODEL_SIZE] = "neither a torch module nor a model file was given"
    return metrics, notes
