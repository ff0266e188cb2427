"""The form in which a model travels from a variant to a runtime."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


#: What a model consumes: images (float ``(N, C, H, W)``), token ids to classify or embed (int64 ``(N, S)``,
#: one forward pass per call), or token ids to continue (a decoder: generation with a KV cache).
WORKLOADS = ("image", "tokens", "generation")

#: Exports a float32 module to ONNX with a dynamic batch axis: ``(module, input_shape, opset, name) -> file``.
#: Made by the runtimes (:func:`mlperf_track.runtimes.onnx_export.cached_onnx_exporter`), used by variant recipes
#: (``VariantContext.onnx_exporter``): it lives here because neither of those layers may import the other.
OnnxExporter = Callable[["torch.nn.Module", tuple[int, ...], int, str], Path]


@dataclass(frozen=True)
class TokenInputs:
    """The inputs of a text model: int64 token ids ``(batch, sequence)``, never cast to the compute dtype.

    Attributes:
        vocab_size: Ids run from 0 to ``vocab_size - 1`` (synthetic inputs draw from that range).
        max_positions: The longest sequence the model accepts (the sequence axis is dynamic up to it).
        kind: ``encoder`` (one forward pass gives logits per sequence) or ``decoder`` (generation).
    """

    vocab_size: int
    max_positions: int
    kind: str = "encoder"


@dataclass
class ModelArtifact:
    """A model ready for a runtime: a ``torch.nn.Module``, an ONNX file, or both.

    Attributes:
        name: Human-readable name (``resnet18``, ``resnet18-pruned``).
        input_shape: Shape of one sample: ``(channels, height, width)`` for images, ``(sequence,)`` for text.
        module: The PyTorch module (on CPU, fp32 unless the variant changed that), when there is one.
        onnx_path: An ONNX file for runtimes that consume ONNX (e.g. a QDQ int8 model), when there is one.
        num_classes: Size of the output layer, when known.
        precision: A precision the artifact is fixed to (``int8`` for a quantized model), or ``None``.
        runtime: A runtime the artifact needs (``compile`` for PT2E int8, ``onnxruntime`` for QDQ), or ``None``.
        device: The device the artifact must run on (``cpu`` for a PT2E int8 graph with x86 kernels), or ``None``
            when runtimes move it to the case's device (every float artifact, half-precision ones included).
        tags: Facts about how the artifact was made (recipe, quantizer, sparsity, ...).
        tokens: For a text model, its token inputs (the module maps ids to logits); ``None`` for images.
    """

    name: str
    input_shape: tuple[int, ...]
    module: torch.nn.Module | None = None
    onnx_path: Path | None = None
    num_classes: int | None = None
    precision: str | None = None
    runtime: str | None = None
    device: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    tokens: TokenInputs | None = None

    @property
    def workload(self) -> str:
        """``image``, ``tokens`` (an encoder) or ``generation`` (a decoder): see :data:`WORKLOADS`."""
        if self.tokens is None:
            return "image"
        return "generation" if self.tokens.kind == "decoder" else "tokens"

    def __post_init__(self) -> None:
        if self.module is None and self.onnx_path is None:
            raise ValueError(f"model artifact {self.name!r} has neither a module nor an ONNX file")
