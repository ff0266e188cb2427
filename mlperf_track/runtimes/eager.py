"""The eager runtime: the PyTorch module as it is, cast to the precision, under ``torch.inference_mode``.

fp16/bf16 are true casts of weights and inputs; fp32/tf32 keep float32 (the TF32 switches are set around
the case by :func:`mlperf_track.engine.precision.precision_settings`). Every float artifact, a half-precision
variant included, is moved to the case's device (:func:`~mlperf_track.runtimes._torch.placement`). int8 runs
an artifact that is already quantized (e.g. dynamic-quantized ``Linear`` layers) where it is, on the CPU,
where torch has the kernels. A text decoder generates with a dynamic KV cache (``model.generate``; see
:mod:`~mlperf_track.runtimes._generation`; option ``decode_loop=generate|forward``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, ClassVar

from mlperf_track.options import OptionSpec
from mlperf_track.runtimes._common import check_artifact, check_batch_sizes, keeps_own_form, vocab_of
from mlperf_track.runtimes._generation import DECODE_LOOPS, GenerationPreparedModel, decode_loop_option
from mlperf_track.runtimes._torch import (
    TorchPreparedModel,
    compute_dtype,
    place_module,
    placement,
    require_module,
    torch_capabilities,
)
from mlperf_track.runtimes.base import PreparedModel, Runtime, RuntimeCapabilities

if TYPE_CHECKING:
    from mlperf_track.models.artifact import ModelArtifact
    from mlperf_track.runtimes.base import PrepareRequest

logger = logging.getLogger(__name__)


class EagerRuntime(Runtime):
    """Plain PyTorch execution (the reference every other runtime is compared with)."""

    name: ClassVar[str] = "eager"
    experimental_devices: ClassVar[frozenset[str]] = frozenset({"cuda"})
    accepted_options: ClassVar[tuple[OptionSpec, ...]] = (
        OptionSpec(
            "decode_loop",
            "text decoders: model.generate, or a plain loop over model.forward with the same dynamic cache",
            choices=DECODE_LOOPS,
            default="generate",
        ),
    )

    def capabilities(self) -> RuntimeCapabilities:
        """fp32/fp16/bf16/int8 on CPU; fp32/fp16 (and tf32/bf16 from Ampere on) on a CUDA GPU."""
        return torch_capabilities()

    def prepare(self, artifact: ModelArtifact, request: PrepareRequest) -> PreparedModel:
        """Place a copy of the module on the device in the precision's dtype (and memory format)."""
        self.check(request.device, request.precision)
        self.check_workload(artifact.workload)
        check_artifact(self.name, artifact, request.precision, request.device)
        check_batch_sizes(request.batch_sizes)
        module = require_module(self.name, artifact)
        target = placement(artifact, request)
        placed = place_module(module, target)
        dtype = compute_dtype(request.precision)
        tags = {
            "runtime.dtype": str(dtype).removeprefix("torch."),
            "runtime.channels_last": str(target.channels_last).lower(),
            "runtime.grad_mode": "inference_mode",
            **self.experimental_tags(request.device),
        }
        if keeps_own_form(artifact):
            tags["runtime.artifact_kept_as_is"] = "true"  # quantized or pinned to its device: not moved or cast
        logger.debug("eager %s prepared on %s in %s", artifact.name, request.device, dtype)
        if artifact.workload == "generation":
            assert artifact.tokens is not None
            loop = decode_loop_option(request.options)
            tags.update({"runtime.kv_cache": "dynamic (DynamicCache)", "runtime.decode_loop": loop})
            return GenerationPreparedModel(placed.eval(), request, artifact.tokens.vocab_size, tags, decode_loop=loop)
        return TorchPreparedModel(
            placed, request, dtype, tags, channels_last=target.channels_last, vocab_size=vocab_of(artifact)
        )
