"""The baseline: the loaded model with a head for the dataset's classes, trained so accuracy means something.

Two ways to train it:

- ``epochs=None`` (``auto``, the pipeline's default): until it has converged, i.e. until its top-1 on the
  holdout split stops improving (:data:`DEFAULT_STOPPING`: patience 2 epochs, at most 20 epochs and 300 s),
  keeping the best epoch's weights. Settings (:data:`~mlperf_track.variants.common.CONVERGE_TRAIN`): AdamW,
  lr 1e-3 after a 10-step warm-up, constant, cut x0.2 after every epoch without a holdout gain, weight decay
  0.01, batch 32, seeded data order.
- ``epochs=N``: exactly ``N`` epochs with a cosine decay (:data:`~mlperf_track.variants.common.DEFAULT_TRAIN`),
  BatchNorm statistics recomputed at the end (the behaviour before ``auto`` existed).

How the ``auto`` settings were chosen, from random initialisation on ``digits`` at 64 px (1,258 training,
180 holdout, 359 evaluation images) on the project's 2-core AVX512 machine: AdamW at 1e-3 gets resnet18 to
0.97 holdout top-1 within three epochs but, held constant, the holdout accuracy then swings by 3-6 points
from epoch to epoch (0.989 -> 0.911 between epochs 7 and 8); cutting the rate when the holdout stalls
settles it. An epoch of resnet50 costs about 24-35 s in fp32 on the quiet machine (resnet18: 8-12 s). Uncapped,
resnet50 reached its best holdout top-1 (0.978) at epoch 6 and resnet18 (0.978, evaluation 0.989) at epoch 3-5,
so with a patience of 2 resnet50 stops after about 8 epochs, ~280 s in fp32: hence the 300 s cap. In bf16 mixed
precision (``train_precision=auto`` on this AVX512-BF16 CPU) an epoch takes about 15 s: 6 epochs, 90 s, holdout
and evaluation top-1 0.972. The cap bounds the pipeline's wall time on a slower or busier machine, and a run it
ends is tagged ``baseline.converged=false``.

The result is cached under ``cache_dir/baselines`` keyed by everything that changes it (model, a fingerprint
of its initial weights, dataset and split sizes, image size, epochs or stopping rule, seed, classes,
training settings, device, torch version), so a second run loads it instead of retraining. The cache keeps
the training curve, which the facts carry to MLflow (``baseline.curve``, logged as metrics by epoch).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mlperf_track import metrics
from mlperf_track.data.base import DatasetSplits
from mlperf_track.data.common import with_holdout
from mlperf_track.engine.accuracy import evaluate_accuracy, module_predictor
from mlperf_track.errors import ConfigError
from mlperf_track.models.artifact import ModelArtifact
from mlperf_track.models.base import LoadedModel
from mlperf_track.training.config import TrainConfig, TrainResult
from mlperf_track.training.early_stopping import STOP_PATIENCE, StoppingRule
from mlperf_track.training.loop import train, train_until_converged
from mlperf_track.variants.baseline_cache import cache_key, cache_path, load_cached, save_cached
from mlperf_track.variants.common import CONVERGE_TRAIN, DEFAULT_TRAIN

logger = logging.getLogger(__name__)

#: Fixed fine-tuning epochs used when ``auto`` cannot be honoured (no holdout can be cut from the training split).
DEFAULT_EPOCHS = 2
#: When ``epochs=None`` stops (see the module docstring for how it was chosen).
DEFAULT_STOPPING = StoppingRule(patience=2, max_epochs=20, max_seconds=300.0)
#: Facts that describe the training run rather than the model (kept out of the artifact's tags).
_RUN_ONLY_FACTS = (metrics.BASELINE_CURVE_FACT,)


@dataclass
class PreparedBaseline:
    """The baseline ready for variants and runtimes.

    Attributes:
        artifact: The trained (or as-loaded) model.
        facts: Facts for MLflow tags: ``baseline.cached``, ``baseline.trained``, ``baseline.train_s`` (seconds
            the training took when it ran, also when loaded from the cache), ``baseline.val_top1`` (evaluation
            split), ``baseline.epochs`` (``auto`` or the number asked for), ``baseline.epochs_run``,
            ``baseline.best_epoch``, ``baseline.stop_reason``, ``baseline.converged``, ``baseline.stopping``,
            ``baseline.holdout_top1``, ``baseline.head_replaced``, ``baseline.cache_key`` and
            ``baseline.curve`` (the training curve as JSON: ``{metric key: [[epoch, value], ...]}``).
        cached: Whether the trained weights came from the on-disk cache.
    """

    artifact: ModelArtifact
    facts: dict[str, str]
    cached: bool


def prepare_baseline(
    loaded: LoadedModel,
    data: DatasetSplits,
    *,
    image_size: int,
    epochs: int | None,
    device: str,
    seed: int,
    cache_dir: Path,
    train_config: TrainConfig | None = None,
    rule: StoppingRule | None = None,
    train_precision: str = "fp32",
) -> PreparedBaseline:
    """Give the model a head for ``data``'s classes and train it on the training split (cached on disk).

    Nothing is trained for a dataset without labels (``synthetic``) or with ``epochs=0``. ``loaded`` is not
    modified. The evaluation split (``data.val``) is only scored, for ``baseline.val_top1``.

    Args:
        loaded: The model as loaded.
        data: The dataset: its train split is trained on, its holdout split decides when to stop (one is cut
            from the train split when missing).
        image_size: Input resolution.
        epochs: ``None`` to train until the holdout top-1 stops improving, or a fixed number of epochs.
        device: Where to train (``cpu`` or ``cuda``).
        seed: Seed for the head's initialisation, the data order and training.
        cache_dir: Root of the cache; files go to ``cache_dir/baselines``.
        train_config: Training settings; :data:`CONVERGE_TRAIN` (``auto``) or :data:`DEFAULT_TRAIN` (fixed
            epochs) with ``seed`` when ``None``.
        rule: When ``auto`` stops; :data:`DEFAULT_STOPPING` when ``None``.
        train_precision: ``fp32`` or ``bf16`` (mixed precision, see :class:`TrainConfig`); it replaces the
            precision of ``train_config`` and is part of the cache key.

    Returns:
        The prepared baseline.

    Raises:
        ConfigError: ``epochs`` is neither ``None`` nor an integer >= 0.
    """
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0):
        raise ConfigError("epochs", epochs, "an integer >= 0, or auto (train until the holdout accuracy stops rising)")
    module = copy.deepcopy(loaded.module).cpu().eval()
    head_replaced = _fit_head(module, data.num_classes, seed)
    num_classes = data.num_classes or loaded.num_classes
    facts = {
        "baseline.epochs": "auto" if epochs is None else str(epochs),
        "baseline.head_replaced": str(head_replaced).lower(),
    }
    plan = _plan(data, epochs, seed, train_config, rule, precision=train_precision)
    cached = False
    if plan is None:
        reason = "epochs=0" if epochs == 0 else f"dataset {data.name!r} has no labelled training split"
        logger.info("baseline %s is used as loaded (%s)", loaded.name, reason)
        facts.update({"baseline.trained": "false", "baseline.cached": "false", "baseline.not_trained_reason": reason})
        val_top1 = _val_top1(module, data)
    else:
        key = cache_key(
            loaded,
            plan.data,
            image_size=image_size,
            device=device,
            config=plan.config,
            num_classes=num_classes,
            rule=plan.rule,
        )
        path = cache_path(cache_dir, loaded.name, key)
        meta = load_cached(module, path)
        cached = meta is not None
        if meta is None:
            meta = _train_and_save(module, plan, device=device, path=path, name=loaded.name, fresh_head=head_replaced)
        val_top1 = meta.get("val_top1")
        facts.update(_trained_facts(meta, cached=cached, key=key))
        facts.update(plan.notes)
    if val_top1 is not None:
        facts["baseline.val_top1"] = f"{float(val_top1):.4f}"
    artifact = ModelArtifact(
        name=loaded.name,
        input_shape=(3, image_size, image_size),
        module=module,
        num_classes=num_classes,
        tags={
            "variant.recipe": "baseline",
            "baseline.weights": loaded.weights,
            **{key: value for key, value in facts.items() if key not in _RUN_ONLY_FACTS},
        },
    )
    return PreparedBaseline(artifact=artifact, facts=facts, cached=cached)


@dataclass(frozen=True)
class _Plan:
    """How the baseline will be trained: the data (with its holdout), the settings, the rule (``None``: fixed)."""

    data: DatasetSplits
    config: TrainConfig
    rule: StoppingRule | None
    notes: dict[str, str]


def _plan(
    data: DatasetSplits,
    epochs: int | None,
    seed: int,
    config: TrainConfig | None,
    rule: StoppingRule | None,
    *,
    precision: str,
) -> _Plan | None:
    """``None`` when nothing is trained (no labelled training split, or ``epochs=0``)."""
    if data.train is None or data.num_classes is None or epochs == 0:
        return None
    common: dict[str, Any] = {"seed": seed, "precision": precision}
    if epochs is not None:
        return _Plan(data, dataclasses.replace(config or DEFAULT_TRAIN, epochs=epochs, **common), None, {})
    data = with_holdout(data, seed)
    rule = rule or DEFAULT_STOPPING
    if data.holdout is None:
        note = f"no holdout split could be cut from {data.name}'s training split: trained {DEFAULT_EPOCHS} epochs"
        logger.warning("baseline: %s, not to convergence", note)
        fixed = dataclasses.replace(config or DEFAULT_TRAIN, epochs=DEFAULT_EPOCHS, **common)
        return _Plan(data, fixed, None, {"baseline.not_converged_reason": note})
    converge = dataclasses.replace(config or CONVERGE_TRAIN, epochs=rule.max_epochs, **common)
    return _Plan(data, converge, rule, {})


def _trained_facts(meta: dict[str, Any], *, cached: bool, key: str) -> dict[str, str]:
    facts = {
        "baseline.trained": "true",
        "baseline.cached": str(cached).lower(),
        "baseline.train_s": f"{meta.get('train_s') or 0.0:.2f}",
        "baseline.cache_key": key,
        "baseline.epochs_run": str(meta.get("epochs_run", "")),
        "baseline.stop_reason": str(meta.get("stop_reason", "")),
        "baseline.train_precision": str(meta.get("train_precision", "fp32")),
    }
    if meta.get("stopping"):
        facts["baseline.stopping"] = str(meta["stopping"])
        facts["baseline.converged"] = str(meta.get("stop_reason") == STOP_PATIENCE).lower()
    if meta.get("best_epoch") is not None:
        facts["baseline.best_epoch"] = str(meta["best_epoch"])
    if meta.get("holdout_top1") is not None:
        facts["baseline.holdout_top1"] = f"{float(meta['holdout_top1']):.4f}"
    if meta.get("curve"):
        facts[metrics.BASELINE_CURVE_FACT] = json.dumps(meta["curve"], separators=(",", ":"))
    return facts


def training_curve(result: TrainResult) -> dict[str, list[list[float]]]:
    """The run's curve as ``{metric key: [[epoch, value], ...]}`` (holdout scores from epoch 0, before training).

    Keys: ``baseline/train_loss``, ``baseline/holdout_top1``, ``baseline/holdout_loss``; values that are not
    finite are left out.
    """
    series = {
        metrics.BASELINE_TRAIN_LOSS: list(enumerate(result.epoch_losses, start=1)),
        metrics.BASELINE_HOLDOUT_TOP1: list(enumerate(result.holdout_top1)),
        metrics.BASELINE_HOLDOUT_LOSS: list(enumerate(result.holdout_loss)),
    }
    return {
        key: [[epoch, round(float(value), 6)] for epoch, value in points if math.isfinite(value)]
        for key, points in series.items()
        if points
    }


def _fit_head(module: nn.Module, num_classes: int | None, seed: int) -> bool:
    """Replace the head when the dataset has another number of classes; the new head is seeded."""
    if num_classes is None:
        return False
    from mlperf_track.models.heads import classifier_out_features, replace_classifier

    if classifier_out_features(module) == num_classes:
        return False
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        replace_classifier(module, num_classes)
    return True


def _val_top1(module: nn.Module, data: DatasetSplits) -> float | None:
    if data.val is None or data.num_classes is None:
        return None
    return evaluate_accuracy(module_predictor(module), data.val).top1


def _train_and_save(
    module: nn.Module, plan: _Plan, *, device: str, path: Path, name: str, fresh_head: bool
) -> dict[str, Any]:
    data = plan.data
    assert data.train is not None
    how = plan.rule.describe() if plan.rule is not None else f"{plan.config.epochs} epoch(s)"
    size = len(data.train)  # type: ignore[arg-type]
    logger.info("training baseline %s on %s (%s images) on %s: %s", name, data.name, size, device, how)
    description = f"train baseline {name}"
    if plan.rule is not None:
        assert data.holdout is not None
        result = train_until_converged(
            module,
            data.train,
            data.holdout,
            plan.config,
            plan.rule,
            device=device,
            description=description,
            fresh_head=fresh_head,
        )
    else:
        result = train(module, data.train, plan.config, device=device, description=description, holdout=data.holdout)
    val_top1 = _val_top1(module, data)
    logger.info("baseline %s trained: %s; evaluation top-1 %s", name, result.budget(), val_top1)
    best = result.best_epoch
    meta: dict[str, Any] = {
        "train_s": result.seconds,
        "val_top1": val_top1,
        "final_loss": result.final_loss,
        "epochs_run": result.epochs,
        "best_epoch": best,
        "stop_reason": result.stop_reason,
        "train_precision": result.precision,
        "stopping": plan.rule.describe() if plan.rule is not None else None,
        "holdout_top1": result.holdout_top1[best] if best is not None and result.holdout_top1 else None,
        "curve": training_curve(result),
    }
    save_cached(module, meta, path)
    return meta
