"""Settings shared by the pruning recipes: the ratio, the recovery fine-tune, and which layer is the head."""

from __future__ import annotations

import logging

from torch import nn

from mlperf_track.options import OptionSpec
from mlperf_track.training.loop import TrainResult, train
from mlperf_track.variants.base import VariantContext
from mlperf_track.variants.common import train_config
from mlperf_track.variants.options import option_float, option_int

logger = logging.getLogger(__name__)

DEFAULT_RATIO = 0.5
DEFAULT_FINE_TUNE_EPOCHS = 1
#: The options both pruning recipes read (declared here, next to their readers).
PRUNING_OPTIONS = (
    OptionSpec(
        "ratio", "fraction of weights or channels to remove", "float", low=0, high=1, default=str(DEFAULT_RATIO)
    ),
    OptionSpec("fine_tune_epochs", "recovery fine-tuning epochs", "int", low=0, default=str(DEFAULT_FINE_TUNE_EPOCHS)),
)


def pruning_ratio(context: VariantContext) -> float:
    """``--option ratio=R``: fraction of weights (unstructured) or channels (structured) to remove, in (0, 1)."""
    return option_float(context.options, "ratio", DEFAULT_RATIO, low=0.0, high=1.0)


def fine_tune_epochs(context: VariantContext) -> int:
    """``--option fine_tune_epochs=N``: recovery fine-tuning after pruning (0: none)."""
    return option_int(context.options, "fine_tune_epochs", DEFAULT_FINE_TUNE_EPOCHS, minimum=0)


def head_layer(module: nn.Module) -> nn.Module | None:
    """The classification head, which pruning leaves whole (its outputs are the classes)."""
    from mlperf_track.models.heads import find_classifier

    found = find_classifier(module)
    return found[1] if found is not None else None


def recover(module: nn.Module, context: VariantContext, epochs: int, recipe: str) -> tuple[TrainResult, str]:
    """Fine-tune ``module`` after pruning on the training split, when there is a labelled one.

    Returns:
        The training result and a one-line description for the ``prune.fine_tune`` tag.
    """
    data = context.data
    if epochs == 0:
        return TrainResult(), "none (fine_tune_epochs=0)"
    if data.train is None or data.num_classes is None:
        logger.info("%s: no labelled training split in %s, so no recovery fine-tuning", recipe, data.name)
        return TrainResult(), f"none ({data.name} has no labelled training split)"
    result = train(module, data.train, train_config(context, epochs=epochs), device=context.device, description=recipe)
    return result, f"{result.epochs} epoch(s), {result.seconds:.1f} s"
