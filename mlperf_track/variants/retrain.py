"""The training budget of the variants that retrain: recovery after pruning and distillation.

A variant that trains starts from the converged baseline (pruning) or learns from it (distillation) and is
held to the baseline's rule: it trains until its own holdout top-1 stops improving, keeping its best epoch
(epoch 0, the variant before any training, included), within :data:`VARIANT_STOPPING`'s caps, and stops
as soon as its holdout top-1 reaches the baseline's (:func:`recovery_target`; on the same holdout split):
the variant has then recovered what it lost, and more training would only credit it with accuracy that
more training of the baseline would also give. A pruned model that loses nothing on the holdout is not
trained at all. It never sees the evaluation split. Its accuracy is then compared with the converged
baseline's on that split. A variant that still beats the baseline significantly (its holdout top-1 can jump
past the baseline's within one epoch) says the baseline was not fully converged or that the variant
regularises better, not that the variant is more accurate; the pipeline's accuracy verdict reports such a
gain with that warning (see :mod:`mlperf_track.engine.accuracy`), never as a win.

Every such variant's artifact carries its budget as tags: ``variant.train_epochs``, ``variant.train_s``,
``variant.train_stop`` (why it stopped, which epoch was kept), ``variant.train_rule`` and
``variant.train_precision`` (``fp32``, or ``bf16`` mixed precision: the baseline's training precision). In a composition
(``pruned_structured+distilled``) the epochs and seconds of every step add up.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from torch import nn
from torch.utils.data import Dataset

from mlperf_track.data.common import with_holdout
from mlperf_track.errors import ConfigError
from mlperf_track.training.config import TrainConfig, TrainResult
from mlperf_track.training.early_stopping import StoppingRule
from mlperf_track.training.loop import train, train_until_converged
from mlperf_track.variants.base import VariantContext
from mlperf_track.variants.common import CONVERGE_TRAIN, DEFAULT_TRAIN, labelled_train

logger = logging.getLogger(__name__)

#: A variant's budget per training run: patience 2, at most 10 epochs and 60 s. From the converged resnet18 at
#: 64 px on digits, recovery after 50% pruning peaks after 2-4 epochs (about 10 s each on the quiet 2-core
#: machine, 35 s for resnet50); the 60 s cap keeps ``variants=all`` (three such runs) within about three
#: minutes of training, and a run it cuts short says so in ``variant.train_stop``.
VARIANT_STOPPING = StoppingRule(patience=2, max_epochs=10, max_seconds=60.0)
#: Recovery after pruning starts from converged weights, so it uses a tenth of the from-scratch rate.
RECOVERY_LR = 1e-4
AUTO = "auto"

#: Tags of the budget (see the module docstring).
TRAIN_EPOCHS_TAG = "variant.train_epochs"
TRAIN_SECONDS_TAG = "variant.train_s"
TRAIN_STOP_TAG = "variant.train_stop"
TRAIN_RULE_TAG = "variant.train_rule"
TRAIN_PRECISION_TAG = "variant.train_precision"


def option_epochs(options: Mapping[str, str], key: str, default: int | None, *, minimum: int = 0) -> int | None:
    """``--option key=N`` (an integer >= ``minimum``) or ``key=auto`` (``None``: until converged), else ``default``.

    Raises:
        ConfigError: Neither ``auto`` nor an integer >= ``minimum``.
    """
    raw = options.get(key)
    if raw is None:
        return default
    text = str(raw).strip().lower()
    if text == AUTO:
        return None
    allowed = f"an integer >= {minimum}, or auto (until the holdout accuracy stops rising)"
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(key, raw, allowed) from None
    if value < minimum:
        raise ConfigError(key, raw, allowed)
    return value


@dataclass(frozen=True)
class RetrainPlan:
    """What a variant trains on and how long.

    Attributes:
        train: The training split.
        holdout: The holdout split (``None`` only when none could be cut; then ``rule`` is ``None`` too).
        config: Optimizer and schedule settings (``epochs`` matters only without a rule).
        rule: The stopping rule, or ``None`` for a fixed number of epochs.
    """

    train: Dataset
    holdout: Dataset | None
    config: TrainConfig
    rule: StoppingRule | None


#: The baseline's holdout top-1 (its kept epoch), inherited by every artifact derived from it.
BASELINE_HOLDOUT_TAG = "baseline.holdout_top1"


def recovery_target(source_tags: Mapping[str, str]) -> float | None:
    """The holdout top-1 a retraining variant stops at: its baseline's, read from ``source_tags`` (``None``
    when the baseline was not trained on a holdout, e.g. pretrained weights used as they are)."""
    raw = source_tags.get(BASELINE_HOLDOUT_TAG)
    try:
        value = float(raw) if raw else None
    except ValueError:
        return None
    return value if value is not None and 0 < value <= 1 else None


def retrain_plan(
    context: VariantContext,
    epochs: int | None,
    purpose: str,
    *,
    lr: float | None = None,
    target_top1: float | None = None,
) -> RetrainPlan:
    """The plan for ``epochs`` (``None``: until converged, within :data:`VARIANT_STOPPING`, or until the
    holdout top-1 reaches ``target_top1``: the baseline's, see :func:`recovery_target`).

    Raises:
        DataError: The dataset has no labelled training split.
    """
    labelled_train(context, purpose)
    data = with_holdout(context.data, context.seed)
    assert data.train is not None
    if epochs is not None or data.holdout is None:
        fixed = 1 if epochs is None else epochs
        if epochs is None:
            logger.warning("%s: no holdout split, so %d fixed epoch instead of early stopping", purpose, fixed)
        config = dataclasses.replace(DEFAULT_TRAIN, epochs=fixed, seed=context.seed, precision=context.train_precision)
        return RetrainPlan(data.train, data.holdout, _with_lr(config, lr), None)
    config = dataclasses.replace(
        CONVERGE_TRAIN, epochs=VARIANT_STOPPING.max_epochs, seed=context.seed, precision=context.train_precision
    )
    rule = dataclasses.replace(VARIANT_STOPPING, target_top1=target_top1)
    return RetrainPlan(data.train, data.holdout, _with_lr(config, lr), rule)


def _with_lr(config: TrainConfig, lr: float | None) -> TrainConfig:
    return config if lr is None else dataclasses.replace(config, lr=lr)


def fine_tune(module: nn.Module, plan: RetrainPlan, context: VariantContext, recipe: str) -> TrainResult:
    """Train ``module`` in place by ``plan`` with cross-entropy (it ends in eval mode on the CPU)."""
    if plan.rule is not None:
        assert plan.holdout is not None
        return train_until_converged(
            module, plan.train, plan.holdout, plan.config, plan.rule, device=context.device, description=recipe
        )
    return train(module, plan.train, plan.config, device=context.device, description=recipe, holdout=plan.holdout)


def budget_tags(previous: Mapping[str, str], result: TrainResult) -> dict[str, str]:
    """The budget tags of a training run, added to those of the steps before it (``previous`` artifact tags)."""
    epochs = result.epochs + int(previous.get(TRAIN_EPOCHS_TAG, "0") or 0)
    seconds = result.seconds + float(previous.get(TRAIN_SECONDS_TAG, "0") or 0.0)
    stop = result.budget()
    rule = result.rule.describe() if result.rule is not None else "fixed epochs"
    if TRAIN_STOP_TAG in previous:  # a composition: keep every step's line
        stop, rule = f"{previous[TRAIN_STOP_TAG]}; {stop}", f"{previous.get(TRAIN_RULE_TAG, '')}; {rule}"
    return {
        TRAIN_EPOCHS_TAG: str(epochs),
        TRAIN_SECONDS_TAG: f"{seconds:.2f}",
        TRAIN_STOP_TAG: stop,
        TRAIN_RULE_TAG: rule,
        TRAIN_PRECISION_TAG: result.precision,
    }


def gain_warning(artifact_tags: dict[str, str], baseline_facts: dict[str, str]) -> str:
    """What a significant top-1 gain over the baseline means for this case (it is never a win)."""
    if baseline_facts.get("baseline.converged") == "false":
        why = f"the baseline stopped at a cap ({baseline_facts.get('baseline.stop_reason', '?')}) before it converged"
    elif baseline_facts.get("baseline.trained") != "true":
        why = "the baseline was not trained on this dataset, so any training helps"
    else:
        why = "the baseline, trained until its holdout accuracy stopped rising, may still not be fully converged"
    epochs = artifact_tags.get(TRAIN_EPOCHS_TAG)
    if epochs is not None:
        return (
            f"significant top-1 gain over the baseline after {epochs} more training epoch(s): {why}, or the "
            "recipe regularises; it is accuracy more training could give the baseline too, not a win of the variant"
        )
    return (
        "significant top-1 gain over the baseline without any training: a chance effect on a few images or "
        f"{why}; not an accuracy improvement the variant brings"
    )
