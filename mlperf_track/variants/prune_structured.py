"""``pruned_structured``: remove whole channels with torch-pruning, giving a physically smaller, faster model.

torch-pruning traces the model to find the layers coupled through a channel (a conv, its BatchNorm, the next
conv's input, residual additions) and removes ``ratio`` of each prunable group's channels, ranked by the L1
norm of the whole group (``GroupMagnitudeImportance(p=1)``). The head keeps its outputs. Removing half of
the channels leaves roughly a quarter of the conv parameters and FLOPs; a short fine-tune recovers accuracy.
"""

from __future__ import annotations

import logging

from torch import nn

from mlperf_track.errors import ExportError, MissingDependencyError
from mlperf_track.models.artifact import ModelArtifact
from mlperf_track.variants.base import Variant, VariantContext
from mlperf_track.variants.common import copy_module, count_params, derive, example_input
from mlperf_track.variants.memo import memoized
from mlperf_track.variants.prune_common import PRUNING_OPTIONS, fine_tune_epochs, head_layer, pruning_ratio, recover
from mlperf_track.variants.variant_cache import variant_cache

logger = logging.getLogger(__name__)


def conv_channels(module: nn.Module) -> int:
    """Total output channels of the module's conv layers."""
    return sum(layer.out_channels for layer in module.modules() if isinstance(layer, nn.Conv2d))


def prune_channels(module: nn.Module, example: object, ratio: float) -> nn.Module:
    """Remove ``ratio`` of the channels of every prunable group of ``module`` in place (head left whole).

    Raises:
        MissingDependencyError: torch-pruning is not installed.
        ExportError: torch-pruning cannot trace the model.
    """
    try:
        import torch_pruning as tp
    except ImportError as error:
        raise MissingDependencyError("torch_pruning", "prune", "structured pruning") from error
    head = head_layer(module)
    try:
        pruner = tp.pruner.MetaPruner(
            module,
            example_inputs=example,
            importance=tp.importance.GroupMagnitudeImportance(p=1),
            pruning_ratio=ratio,
            ignored_layers=[head] if head is not None else [],
        )
        pruner.step()
    except Exception as error:  # tracing failures surface as many types
        raise ExportError(f"torch-pruning cannot prune {type(module).__name__}: {error}") from error
    return module


class StructuredPruneVariant(Variant):
    """Remove ``ratio`` of the channels (L1 group magnitude), then fine-tune to recover.

    Options:
        ratio: Fraction of channels to remove from each prunable group, in (0, 1) (default 0.5).
        fine_tune_epochs: Recovery fine-tuning epochs, or ``auto``: until the holdout top-1 reaches the
            baseline's or stops improving (default: ``auto`` when the baseline is trained to convergence, else 1).
    """

    name = "pruned_structured"
    trains = True
    accepted_options = PRUNING_OPTIONS
    extra = "prune"

    def unavailable_reason(self, device: str) -> str | None:
        """Needs torch-pruning."""
        from importlib.util import find_spec

        if find_spec("torch_pruning") is None:
            return "needs torch-pruning: pip install 'mlperf-track[prune]'"
        return None

    @memoized
    def build(self, baseline: ModelArtifact, context: VariantContext) -> ModelArtifact:
        """Prune a copy of the baseline (or load the fine-tuned weights from the variant cache)."""
        ratio = pruning_ratio(context)
        epochs = fine_tune_epochs(context)
        module = copy_module(baseline, self.name)
        params_before, channels_before = count_params(module), conv_channels(module)
        # Pruning is deterministic (group L1 magnitudes of the same weights) and cheap: it rebuilds the structure
        # the cached weights were trained in; the cache checks every tensor's shape before loading.
        prune_channels(module, example_input(baseline, 1), ratio)
        params_after, channels_after = count_params(module), conv_channels(module)
        logger.info(
            "%s: %d -> %d parameters, %d -> %d conv channels",
            self.name,
            params_before,
            params_after,
            channels_before,
            channels_after,
        )
        cache = variant_cache(self.name, baseline, context, {"ratio": ratio, "fine_tune_epochs": epochs})
        cached = cache.load(module)
        if cached is not None:
            return derive(baseline, self.name, module.eval(), cached)
        result, recovery_tags = recover(module, context, epochs, self.name, baseline.tags)
        tags = {
            "prune.method": "structured channel pruning (torch-pruning MetaPruner, group L1 magnitude)",
            "prune.ratio": f"{ratio:g}",
            "prune.params_before": str(params_before),
            "prune.params_after": str(params_after),
            "prune.conv_channels_before": str(channels_before),
            "prune.conv_channels_after": str(channels_after),
            **recovery_tags,
        }
        if result is not None:
            tags = cache.save(module, tags)
        return derive(baseline, self.name, module.eval(), tags)
