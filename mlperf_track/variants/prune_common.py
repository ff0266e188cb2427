"""Settings shared by the pruning recipes: the ratio, the recovery fine-tune, and which layer is the head."""

from __future__ import annotations

import logging

from torch import nn

from mlperf_track.options import OptionSpec
from mlperf_track.training.config import TrainResult
from mlperf_track.variants.base import VariantContext
from mlperf_track.variants.options import option_float
from mlperf_track.variants.retrain import (
    RECOVERY_LR,
    budget_tags,
    fine_tune,
    option_epochs,
    recovery_target,
    retrain_plan,
)

logger = logging.getLogger(__name__)

DEFAULT_RATIO = 0.5
#: Recovery epochs when the pipeline trains fixed epochs (``--epochs N``); with ``auto`` the recovery trains
#: until its holdout top-1 reaches the baseline's or stops improving (:mod:`~mlperf_track.variants.retrain`).
DEFAULT_FINE_TUNE_EPOCHS = 1
#: The options both pruning recipes read (declared here, next to their readers).
PRUNING_OPTIONS = (
    OptionSpec(
        "ratio", "fraction of weights or channels to remove", "float", low=0, high=1, default=str(DEFAULT_RATIO)
    ),
    OptionSpec(
        "fine_tune_epochs",
        "recovery fine-tuning epochs (auto: until the holdout score stops improving or, for image models, "
        "reaches the baseline's)",
        "int",
        low=0,
        default=f"auto with --epochs auto, else {DEFAULT_FINE_TUNE_EPOCHS}",
        accepts_auto=True,
    ),
)


def pruning_ratio(context: VariantContext) -> float:
    """``--option ratio=R``: fraction of weights (unstructured) or channels (structured) to remove, in (0, 1)."""
    return option_float(context.options, "ratio", DEFAULT_RATIO, low=0.0, high=1.0)


def fine_tune_epochs(context: VariantContext) -> int | None:
    """``--option fine_tune_epochs=N|auto``: recovery fine-tuning after pruning (0: none; auto: until converged).

    The default follows the pipeline: ``auto`` when the baseline is trained to convergence, else
    :data:`DEFAULT_FINE_TUNE_EPOCHS`.
    """
    default = None if context.epochs is None else DEFAULT_FINE_TUNE_EPOCHS
    return option_epochs(context.options, "fine_tune_epochs", default, minimum=0)


def head_layer(module: nn.Module) -> nn.Module | None:
    """The classification head, which pruning leaves whole (its outputs are the classes)."""
    from mlperf_track.models.heads import find_classifier

    found = find_classifier(module)
    return found[1] if found is not None else None


def recover(
    module: nn.Module, context: VariantContext, epochs: int | None, recipe: str, previous: dict[str, str]
) -> tuple[TrainResult | None, dict[str, str]]:
    """Fine-tune ``module`` after pruning on the training split, when there is a labelled one.

    Args:
        module: The pruned model, trained in place.
        context: The variant context (data, device, seed).
        epochs: Fixed epochs, ``None`` for early stopping on the holdout, 0 for none.
        recipe: The variant's name, for the log.
        previous: The tags of the artifact that was pruned (a composition's earlier budget adds up).

    Returns:
        The training result (``None`` when nothing was trained) and the tags: ``prune.fine_tune`` (one line)
        and, after training, the budget tags (:func:`~mlperf_track.variants.retrain.budget_tags`).
    """
    data = context.data
    if epochs == 0:
        return None, {"prune.fine_tune": "none (fine_tune_epochs=0)"}
    if data.train is None or data.num_classes is None:
        logger.info("%s: no labelled training split in %s, so no recovery fine-tuning", recipe, data.name)
        return None, {"prune.fine_tune": f"none ({data.name} has no labelled training split)"}
    plan = retrain_plan(context, epochs, f"{recipe} recovery", lr=RECOVERY_LR, target_top1=recovery_target(previous))
    result = fine_tune(module, plan, context, recipe)
    return result, {"prune.fine_tune": result.budget(), **budget_tags(previous, result)}
