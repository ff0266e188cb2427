"""What the eager and compile runtimes share: capabilities, module placement and the prepared model."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from mlperf_track.engine.precision import dtype_for
from mlperf_track.errors import UnsupportedError
from mlperf_track.runtimes._common import chunked_predict, keeps_own_form, synthetic_batch
from mlperf_track.runtimes.base import PreparedModel, RuntimeCapabilities

if TYPE_CHECKING:
    from mlperf_track.models.artifact import ModelArtifact
    from mlperf_track.runtimes.base import PrepareRequest

#: Compute capability from which CUDA GPUs have TF32 and fast bf16 (Ampere).
AMPERE = (8, 0)
#: Smallest chunk :meth:`TorchPreparedModel.predict` runs at once when shapes may vary.
PREDICT_CHUNK = 64


def cuda_precisions() -> frozenset[str]:
    """The float precisions torch runs on this machine's GPU (empty without one)."""
    if not torch.cuda.is_available():
        return frozenset()
    precisions = {"fp32", "fp16"}
    if torch.cuda.get_device_capability() >= AMPERE:
        precisions |= {"tf32", "bf16"}
    return frozenset(precisions)


def torch_capabilities() -> RuntimeCapabilities:
    """What plain torch runs here: fp32/fp16/bf16 and quantized int8 artifacts on CPU, floats on CUDA.

    fp16 on CPU is a real fp16 computation in torch 2.14 (conv2d/linear have CPU half kernels). The
    channels-last memory format is honoured (weights and inputs are laid out NHWC).
    """
    return RuntimeCapabilities(
        {"cpu": frozenset({"fp32", "fp16", "bf16", "int8"}), "cuda": cuda_precisions()},
        channels_last=True,
        workloads=frozenset({"image", "tokens", "generation"}),
    )


def require_module(runtime: str, artifact: ModelArtifact) -> torch.nn.Module:
    """The artifact's module, or an :class:`UnsupportedError` when it has only an ONNX file."""
    if artifact.module is None:
        raise UnsupportedError(
            "runtime",
            runtime,
            ["onnxruntime", "openvino", "tensorrt"],
            hint=f"the artifact {artifact.name!r} is an ONNX file without a PyTorch module",
        )
    return artifact.module


def compute_dtype(precision: str) -> torch.dtype:
    """The dtype weights and inputs are cast to (float32 for a quantized artifact: its kernels take floats)."""
    return dtype_for(precision) or torch.float32


@dataclass(frozen=True)
class Placement:
    """Where and how a runtime runs an artifact's module.

    Attributes:
        device: The device the module goes to, or ``None`` to leave it where it is.
        dtype: The dtype floating-point weights are cast to, or ``None`` to keep them.
        channels_last: Whether weights and inputs use the channels-last memory format.
    """

    device: str | None
    dtype: torch.dtype | None
    channels_last: bool


def placement(artifact: ModelArtifact, request: PrepareRequest) -> Placement:
    """How ``artifact`` runs for ``request``: on the case's device, in the precision's dtype and memory format.

    Only an artifact that must keep its own form (pinned to a device, or quantized: int8 kernels keep their
    dtypes and layout) stays as it is; every other one, half-precision variants included, is moved.
    """
    if keeps_own_form(artifact):
        return Placement(device=None, dtype=None, channels_last=False)
    return Placement(request.device, compute_dtype(request.precision), request.channels_last)


def place_module(module: torch.nn.Module, target: Placement) -> torch.nn.Module:
    """Return ``module`` placed as ``target`` says, copying it before any change.

    ``nn.Module.to`` works in place, and the artifact must stay as it is for the next case.
    """
    if target.device is None:
        return module
    first = next(iter(module.parameters()), None)
    unchanged = (
        first is not None
        and first.device.type == target.device
        and first.dtype == target.dtype
        and not target.channels_last
    )
    if unchanged:
        return module
    placed = copy.deepcopy(module).to(device=target.device, dtype=target.dtype)
    if target.channels_last:
        placed = placed.to(memory_format=torch.channels_last)
    return placed


class TorchPreparedModel(PreparedModel):
    """A torch callable (eager module or ``torch.compile`` result) timed under ``torch.inference_mode``.

    Args:
        call: The module or compiled module.
        request: What was prepared (device, input shape, batch sizes).
        dtype: Input dtype.
        tags: Effective settings.
        channels_last: Give inputs the channels-last memory format (as the module's weights have).
        pad_predict: Pad :meth:`predict` batches to the largest prepared batch size, so a shape-specialised
            compiled model never recompiles.
        on_close: Extra clean-up (e.g. resetting torch.compile's caches).
        vocab_size: For a text model, synthetic inputs are token ids below it (integer inputs are never cast).
    """

    def __init__(
        self,
        call: Callable[[torch.Tensor], Any],
        request: PrepareRequest,
        dtype: torch.dtype,
        tags: dict[str, str],
        *,
        channels_last: bool = False,
        pad_predict: bool = False,
        on_close: Callable[[], None] | None = None,
        vocab_size: int | None = None,
    ) -> None:
        self.device = request.device
        self._vocab_size = vocab_size
        self.tags = tags
        self._call: Callable[[torch.Tensor], Any] | None = call
        self._dtype = dtype
        self._input_shape = request.input_shape
        self._channels_last = channels_last
        self._largest = max(request.batch_sizes)
        self._pad_predict = pad_predict
        self._on_close = on_close

    def _place(self, batch: torch.Tensor) -> torch.Tensor:
        if not batch.is_floating_point():  # token ids stay integers
            return batch.to(device=self.device)
        batch = batch.to(device=self.device, dtype=self._dtype)
        if self._channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch

    def make_input(self, batch_size: int, seed: int = 0) -> torch.Tensor:
        """A seeded batch on the device: standard-normal in the compute dtype and memory format, or token ids."""
        return self._place(synthetic_batch(batch_size, self._input_shape, seed, vocab_size=self._vocab_size))

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        """Run one batch; returns the logits tensor (on the device, possibly still being computed)."""
        if self._call is None:
            raise RuntimeError("this prepared model was closed")
        with torch.inference_mode():
            return self._call(inputs)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Float32 CPU logits for a float32 CPU batch of any size."""
        if self._pad_predict:
            return chunked_predict(lambda part: self(self._place(part)), images, self._largest, self._largest)
        return chunked_predict(lambda part: self(self._place(part)), images, max(self._largest, PREDICT_CHUNK))

    def close(self) -> None:
        """Drop the module and, on CUDA, return cached memory to the driver."""
        self._call = None
        if self._on_close is not None:
            self._on_close()
            self._on_close = None
        if self.device == "cuda":
            torch.cuda.empty_cache()
