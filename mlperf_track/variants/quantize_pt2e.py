"""``quantized_int8_pt2e``: int8 static post-training quantization of a conv net for x86 CPUs (PT2E).

The recipe PyTorch documents for CPU int8 inference: capture the model with ``torch.export.export(...,
strict=True)`` (non-strict capture fails on torchvision ResNets in torch 2.14's PT2E flow), annotate it with
torchao's ``X86InductorQuantizer`` (int8 per-channel symmetric weights, uint8 per-tensor affine activations),
calibrate observers on a few hundred training images, convert. The converted graph holds int8 weights and
``quantized_decomposed`` quantize/dequantize ops; it is fast only once Inductor fuses those into oneDNN int8
kernels, so the artifact is pinned to the ``compile`` runtime, and Inductor needs
``torch._inductor.config.freezing = True`` for that (tag ``compile.freezing``).

The converted graph is cached on disk (:mod:`~mlperf_track.variants.pt2e_cache`): a second build of the same
float32 module with the same calibration data loads it (resnet50 at 64 px on two cores: 7.9 s to build, 0.15 s
to load) and compiles to the same Inductor code.
"""

from __future__ import annotations

import logging
import platform
import warnings
from collections.abc import Iterable
from importlib.util import find_spec

import torch
from torch import nn

from mlperf_track.errors import ExportError, MissingDependencyError
from mlperf_track.models.artifact import ModelArtifact
from mlperf_track.variants.base import Variant, VariantContext
from mlperf_track.variants.calibration import CALIBRATION_SAMPLES_OPTION, calibration_batches, calibration_samples
from mlperf_track.variants.common import copy_module, derive, example_input
from mlperf_track.variants.memo import memoized
from mlperf_track.variants.pt2e_cache import cached_graph, pt2e_cache

logger = logging.getLogger(__name__)

#: Largest batch the exported graph accepts (the batch dimension is dynamic up to this).
MAX_BATCH = 4096
#: Batch size of the example input the graph is exported with.
EXAMPLE_BATCH = 2
#: What else changes the converted graph, for the cache key (bump ``quantizer`` when its configuration changes).
EXPORT_SETTINGS = {
    "max_batch": MAX_BATCH,
    "example_batch": EXAMPLE_BATCH,
    "strict": True,
    "quantizer": "X86InductorQuantizer default config",
}
_X86 = ("x86_64", "amd64", "i386", "i686")


def quantize_pt2e_int8(
    module: nn.Module, example: torch.Tensor, batches: Iterable[torch.Tensor]
) -> torch.fx.GraphModule:
    """Export, annotate, calibrate and convert ``module`` to an int8 PT2E graph.

    Args:
        module: An fp32 module in eval mode (it is not modified).
        example: One input batch (its batch dimension is made dynamic).
        batches: Calibration batches.

    Returns:
        The converted ``torch.fx.GraphModule``.

    Raises:
        MissingDependencyError: torchao is not installed.
        ExportError: ``torch.export`` cannot capture the model.
    """
    _register_quantized_ops()
    from torchao.quantization.pt2e import allow_exported_model_train_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86

    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    try:
        exported = torch.export.export(module.eval(), (example,), dynamic_shapes=({0: batch},), strict=True)
    except Exception as error:  # torch.export raises many types (UserError, Unsupported, ...)
        raise ExportError(f"torch.export(strict=True) cannot capture {type(module).__name__}: {error}") from error
    quantizer = x86.X86InductorQuantizer()
    quantizer.set_global(x86.get_default_x86_inductor_quantization_config())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        prepared = prepare_pt2e(exported.module(), quantizer)
        with torch.no_grad():
            for images in batches:
                prepared(images)
        converted = convert_pt2e(prepared)
    # Runtimes call .eval(), which exported graphs refuse; the graph is already in inference form.
    allow_exported_model_train_eval(converted)
    _drop_unused_tensors(converted)
    return converted


def _register_quantized_ops() -> None:
    """Import what a converted graph needs in this process, whether it was converted here or loaded from the cache:
    torchao's PT2E flow registers the ``quantized_decomposed`` operators the graph calls, and importing its X86
    Inductor quantizer registers the Inductor passes (``pre_grad_custom_pass``, weight packing) that fuse them
    into oneDNN int8 kernels. Without the second, a graph loaded from the cache ran unfused in a new process:
    resnet50 at 64 px 28 ms per call at batch 1 instead of 6 ms, with slightly different results.

    Raises:
        MissingDependencyError: torchao is not installed.
    """
    try:
        import torchao.quantization.pt2e  # noqa: F401
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer  # noqa: F401
    except ImportError as error:
        raise MissingDependencyError("torchao", "quantize", "int8 PT2E quantization") from error


def _drop_unused_tensors(graph_module: torch.fx.GraphModule) -> None:
    """Delete the fp32 weights that conversion replaced by int8 constants but left attached (dead weight)."""
    used = {str(node.target) for node in graph_module.graph.nodes if node.op == "get_attr"}
    named = [*graph_module.named_parameters(), *graph_module.named_buffers()]
    for name, _ in named:
        if name not in used:
            owner, _, attribute = name.rpartition(".")
            delattr(graph_module.get_submodule(owner) if owner else graph_module, attribute)


def int8_weight_count(module: nn.Module) -> int:
    """Elements of the int8 constants of a converted PT2E graph (its quantized weights)."""
    if not isinstance(module, torch.fx.GraphModule):
        return 0
    return sum(buffer.numel() for _, buffer in module.named_buffers() if buffer.dtype == torch.int8)


class PT2EInt8Variant(Variant):
    """int8 static PTQ with torchao's PT2E flow and the X86 Inductor quantizer; runs under ``compile`` on CPU.

    Options:
        calibration_samples: Training images used for calibration (default 256).
    """

    name = "quantized_int8_pt2e"
    accepted_options = (CALIBRATION_SAMPLES_OPTION,)
    extra = "quantize"
    pinned_precision = "int8"
    pinned_runtime = "compile"

    def unavailable_reason(self, device: str) -> str | None:
        """CPU-only (x86) and needs torchao."""
        if device != "cpu":
            return f"PT2E int8 with the X86 Inductor quantizer runs on x86 CPUs only, not on {device}"
        if platform.machine().lower() not in _X86:
            return f"the X86 Inductor quantizer needs an x86 CPU; this one is {platform.machine()}"
        if find_spec("torchao") is None:
            return "needs torchao: pip install 'mlperf-track[quantize]'"
        return None

    @memoized
    def build(self, baseline: ModelArtifact, context: VariantContext) -> ModelArtifact:
        """Quantize a copy of the baseline, or load the graph from the cache
        (:mod:`~mlperf_track.variants.pt2e_cache`); the artifact is pinned to ``int8`` on the ``compile`` runtime."""
        _register_quantized_ops()  # a cached graph calls them too
        samples = calibration_samples(context)
        entry = pt2e_cache(self.name, baseline, context, samples, EXPORT_SETTINGS)
        quantized, tags = cached_graph(entry, lambda: self._quantize(baseline, context, samples))
        return derive(baseline, self.name, quantized, tags, precision="int8", runtime="compile", device="cpu")

    def _quantize(
        self, baseline: ModelArtifact, context: VariantContext, samples: int
    ) -> tuple[torch.fx.GraphModule, dict[str, str]]:
        """Export, calibrate and convert a copy of the baseline; the graph and its artifact tags."""
        module = copy_module(baseline, self.name)
        batches, source = calibration_batches(context, baseline.input_shape, samples)
        logger.info("PT2E int8: exporting %s and calibrating on %d %s images", baseline.name, samples, source)
        quantized = quantize_pt2e_int8(module, example_input(baseline, EXAMPLE_BATCH), batches)
        tags = {
            "quant.method": "pt2e static post-training",
            "quant.quantizer": "torchao X86InductorQuantizer (default config)",
            "quant.weights": "int8 per-channel symmetric",
            "quant.activations": "uint8 per-tensor affine",
            "quant.calibration_samples": str(samples),
            "quant.calibration_data": source,
            "compile.freezing": "true",
            "quant.int8_weights": str(int8_weight_count(quantized)),
        }
        return quantized, tags
