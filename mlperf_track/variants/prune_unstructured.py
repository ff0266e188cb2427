"""``pruned_unstructured``: global L1 magnitude pruning of individual weights.

``torch.nn.utils.prune.global_unstructured`` zeroes the smallest-magnitude fraction ``ratio`` of all conv and
linear weights (ranked together, the head excluded); the recovery fine-tune trains through the masks, so
pruned weights stay zero, then ``prune.remove`` makes the zeros permanent. The tensors stay dense: the model
has the same size and speed with dense kernels, which the tags say; the gain is only compressibility.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils import prune

from mlperf_track.errors import UnsupportedError
from mlperf_track.models.artifact import ModelArtifact
from mlperf_track.variants.base import Variant, VariantContext
from mlperf_track.variants.common import copy_module, derive
from mlperf_track.variants.memo import memoized
from mlperf_track.variants.prune_common import PRUNING_OPTIONS, fine_tune_epochs, head_layer, pruning_ratio, recover
from mlperf_track.variants.variant_cache import variant_cache


def weight_sparsity(layers: Sequence[nn.Module]) -> float:
    """Fraction of exactly-zero weights over ``layers``."""
    total = zeros = 0
    for layer in layers:
        weight = layer.weight
        assert isinstance(weight, torch.Tensor)
        total += weight.numel()
        zeros += int((weight == 0).sum())
    return zeros / max(total, 1)


class UnstructuredPruneVariant(Variant):
    """Zero the ``ratio`` smallest conv/linear weights (global L1), fine-tune through the mask, make it permanent.

    Options:
        ratio: Fraction of weights to zero, in (0, 1) (default 0.5).
        fine_tune_epochs: Recovery fine-tuning epochs, or ``auto``: until the holdout top-1 reaches the
            baseline's or stops improving (default: ``auto`` when the baseline is trained to convergence, else 1).
    """

    name = "pruned_unstructured"
    trains = True
    accepted_options = PRUNING_OPTIONS

    @memoized
    def build(self, baseline: ModelArtifact, context: VariantContext) -> ModelArtifact:
        """Prune a copy of the baseline (or load the pruned, fine-tuned weights from the variant cache)."""
        ratio = pruning_ratio(context)
        epochs = fine_tune_epochs(context)
        module = copy_module(baseline, self.name)
        head = head_layer(module)
        layers = [layer for layer in module.modules() if isinstance(layer, nn.Conv2d | nn.Linear) and layer is not head]
        if not layers:
            raise UnsupportedError("variant", self.name, hint=f"{baseline.name} has no Conv2d/Linear layers to prune")
        cache = variant_cache(self.name, baseline, context, {"ratio": ratio, "fine_tune_epochs": epochs})
        # The pruned model keeps the baseline's structure (the zeros are stored densely): load into the copy.
        cached = cache.load(module)
        if cached is not None:
            return derive(baseline, self.name, module.eval(), cached)
        targets = [(layer, "weight") for layer in layers]
        prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=ratio)
        result, recovery_tags = recover(module, context, epochs, self.name, baseline.tags)
        for layer, parameter in targets:
            prune.remove(layer, parameter)
        module.eval()
        tags = {
            "prune.method": "global unstructured L1 magnitude (torch.nn.utils.prune)",
            "prune.ratio": f"{ratio:g}",
            "prune.weight_sparsity": f"{weight_sparsity(layers):.4f}",
            "prune.layers": str(len(layers)),
            **recovery_tags,
            "prune.speedup": "none expected: zeros are stored densely and dense kernels skip nothing",
        }
        if result is not None:  # only a fine-tune is worth keeping: pruning alone takes a moment
            tags = cache.save(module, tags)
        return derive(baseline, self.name, module, tags)
