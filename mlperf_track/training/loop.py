"""A small, deterministic supervised training loop (fine-tuning, recovery after pruning, distillation).

Two ways to say how long to train: a fixed number of epochs (:func:`train`), or until the holdout top-1
stops improving (:func:`train_until_converged`, with a :class:`~.early_stopping.StoppingRule` that also caps
epochs and wall time, and the best checkpoint restored at the end). Both record the training curve: the
mean training loss of every epoch and, when a holdout split is given, its top-1 and loss after every epoch.

Hand-written rather than taken from a trainer library (Lightning, HF Trainer) because the package needs only
a few dozen lines of it and must not pull a training framework into the core install. Determinism: the
model is trained under a fixed ``torch.manual_seed`` and the data order comes from a seeded generator with
``num_workers=0``, so the same seed gives the same weights on the same machine (a time cap that ends a run
early is the exception: where it cuts depends on the machine's speed).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from mlperf_track.errors import DataError
from mlperf_track.training.config import TrainConfig, TrainResult
from mlperf_track.training.early_stopping import (
    STOP_FIXED,
    STOP_PATIENCE,
    STOP_RECOVERED,
    STOP_TIME_CAP,
    Clock,
    EarlyStopping,
    HoldoutScore,
    StoppingRule,
    score_holdout,
)

logger = logging.getLogger(__name__)

#: ``loss_fn(module, images, labels, *extras) -> scalar loss``; everything is already on the device. ``extras``
#: are the further fields of the dataset's items, batched (items are ``(image, label)`` or ``(image, label,
#: extra, ...)``; distillation with precomputed teacher outputs passes each item's index this way).
LossFn = Callable[..., torch.Tensor]


def make_loader(dataset: Dataset, *, batch_size: int, seed: int, shuffle: bool) -> DataLoader:
    """A single-process loader whose order depends only on ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    size = len(dataset)  # type: ignore[arg-type]
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=0,
        # A final batch of one sample breaks BatchNorm in training mode.
        drop_last=shuffle and size > batch_size,
    )


def _optimizer(module: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [param for param in module.parameters() if param.requires_grad]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, nesterov=config.momentum > 0
    )


def lr_factor(step: int, total_steps: int, config: TrainConfig) -> float:
    """Learning-rate multiplier at ``step`` (0-based) of ``total_steps``: linear warm-up, then the schedule.

    ``plateau`` is constant here; its cuts are applied by the loop on top of this factor.
    """
    warmup = min(config.warmup_steps, max(total_steps // 4, 0))
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if config.schedule in ("constant", "plateau") or total_steps <= warmup:
        return 1.0
    progress = (step - warmup) / max(total_steps - warmup, 1)
    if config.schedule == "step":
        return 0.1 if progress >= 2 / 3 else 1.0
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def cross_entropy_loss(label_smoothing: float = 0.0) -> LossFn:
    """The plain classification loss."""

    def loss_fn(module: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(module(images), labels, label_smoothing=label_smoothing)

    return loss_fn


def train(
    module: nn.Module,
    dataset: Dataset,
    config: TrainConfig,
    *,
    device: str = "cpu",
    loss_fn: LossFn | None = None,
    description: str = "train",
    holdout: Dataset | None = None,
) -> TrainResult:
    """Train ``module`` in place for ``config.epochs`` epochs and leave it in eval mode on the CPU.

    BatchNorm statistics are recomputed at the end (``config.bn_recalibration_samples``).

    Args:
        module: The model; every parameter with ``requires_grad`` is trained.
        dataset: Items ``(image, label)``, or ``(image, label, *extras)`` for a ``loss_fn`` that takes extras.
        config: Optimizer, schedule, epochs, seed.
        device: Where to train (``cpu`` or ``cuda``).
        loss_fn: The loss; cross-entropy by default.
        description: Label for the progress bar and the log.
        holdout: When given, scored after every epoch for the curve only (nothing is selected on it).

    Returns:
        Steps, samples, time, the per-epoch losses and holdout scores.

    Raises:
        DataError: The dataset is empty, or the loss is not finite.
    """
    return _fit(module, dataset, config, _Run(device, loss_fn, description, holdout, None, time.perf_counter))


def train_until_converged(
    module: nn.Module,
    dataset: Dataset,
    holdout: Dataset,
    config: TrainConfig,
    rule: StoppingRule,
    *,
    device: str = "cpu",
    loss_fn: LossFn | None = None,
    description: str = "train",
    clock: Clock = time.perf_counter,
    fresh_head: bool = False,
) -> TrainResult:
    """Train ``module`` in place until the holdout top-1 stops improving, then restore the best checkpoint.

    ``config.epochs`` is not used: ``rule`` caps the epochs and the wall time (checked before every optimizer
    step, so a long epoch is cut short). The kept weights are those of the best-scoring epoch, BatchNorm
    statistics included, so the reported holdout score is the kept model's. Ends in eval mode on the CPU.

    Args:
        module: The model; every parameter with ``requires_grad`` is trained.
        dataset: The training split.
        holdout: The holdout split (never the evaluation split).
        config: Optimizer, schedule (``plateau`` cuts the rate when the holdout stalls), batch size, seed.
        rule: Patience and caps.
        device: Where to train.
        loss_fn: The loss; cross-entropy by default. The holdout is always scored by top-1 and cross-entropy.
        description: Label for the progress bar and the log.
        clock: Seconds, for the time cap (tests inject a fake one).
        fresh_head: The classifier head was just initialised, so the starting point scores at chance level and
            cannot be the run's best: epoch 0 is scored as the model stands, without recomputing its BatchNorm
            statistics first (on resnet50 at 64 px that recomputation costs 6-8 s on two cores, about six times
            the holdout pass). Its score still feeds the curve and the stopping rule's starting value.

    Returns:
        The run, with its curve, best epoch and stop reason.

    Raises:
        DataError: The training or holdout split is empty, or the loss is not finite.
    """
    if len(holdout) == 0:  # type: ignore[arg-type]
        raise DataError(f"cannot {description} with early stopping: the holdout split is empty")
    return _fit(module, dataset, config, _Run(device, loss_fn, description, holdout, rule, clock, fresh_head))


@dataclass(frozen=True)
class _Run:
    device: str
    loss_fn: LossFn | None
    description: str
    holdout: Dataset | None
    rule: StoppingRule | None
    clock: Clock
    fresh_head: bool = False


def _fit(module: nn.Module, dataset: Dataset, config: TrainConfig, run: _Run) -> TrainResult:
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise DataError(f"cannot {run.description}: the training split is empty")
    result = TrainResult(rule=run.rule, precision=config.precision)
    max_epochs = run.rule.max_epochs if run.rule is not None else config.epochs
    if max_epochs == 0:
        return result
    torch.manual_seed(config.seed)
    loader = make_loader(dataset, batch_size=config.batch_size, seed=config.seed, shuffle=True)
    steps_per_epoch = min(len(loader), config.max_steps_per_epoch or len(loader))
    total = steps_per_epoch * max_epochs
    module.to(run.device).train()
    optimizer = _optimizer(module, config)
    cut = [1.0]  # the plateau schedule's multiplier, changed between epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total, config) * cut[0])
    stopper = EarlyStopping(run.rule) if run.rule is not None else None
    start = run.clock()
    # Epoch 0: the starting point. A fine-tune that never beats it keeps the weights it started from.
    initial = _score(module, dataset, config, run, steps=0, recalibrate=not run.fresh_head)
    if initial is not None:
        _record(result, initial)
        if stopper is not None:
            stopper.update(module, 0, initial)
            result.stop_reason = stopper.stop_reason(0) or ""  # a target already reached: nothing to train
            if result.stop_reason == STOP_RECOVERED:
                logger.info(
                    "%s: holdout top-1 %.4f before training already reaches the target: no training",
                    run.description,
                    initial.top1,
                )
    deadline = start + run.rule.max_seconds if run.rule is not None and run.rule.max_seconds is not None else None
    loss_fn = run.loss_fn or cross_entropy_loss(config.label_smoothing)
    for epoch in range(1, 0 if result.stop_reason else max_epochs + 1):
        batches = _progress(loader, steps_per_epoch, f"{run.description} {epoch}/{max_epochs}")
        step = _Step(optimizer, scheduler, loss_fn, autocast_dtype(config.precision))
        done, cut_short = _run_epoch(
            module, batches, step, steps=steps_per_epoch, result=result, run=run, deadline=deadline
        )
        if done == 0:  # the time cap was reached between the last holdout score and this epoch's first step
            result.stop_reason = STOP_TIME_CAP
            break
        result.epochs += 1
        score = _score(module, dataset, config, run, steps=done)
        if score is not None:
            _record(result, score)
        _log_epoch(run.description, epoch, max_epochs, result)
        if stopper is None or score is None:
            continue
        gained = stopper.update(module, epoch, score)
        out_of_time = cut_short or (deadline is not None and run.clock() >= deadline)
        reason = stopper.stop_reason(epoch)
        if out_of_time and reason not in (STOP_PATIENCE, STOP_RECOVERED):
            reason = STOP_TIME_CAP
        if reason is not None:
            result.stop_reason = reason
            break
        if config.schedule == "plateau" and not gained and stopper.epochs_without_gain % config.plateau_patience == 0:
            cut[0] *= config.plateau_factor
            result.lr_cuts.append(epoch)
            logger.info("%s: holdout top-1 stalled, learning rate x%g", run.description, config.plateau_factor)
    if stopper is not None:
        stopper.restore(module)
        result.best_epoch = stopper.best_epoch
    else:
        recalibrate_batch_norm(module, dataset, config, device=run.device)
        result.stop_reason = STOP_FIXED
    result.seconds = run.clock() - start
    module.to("cpu").eval()
    return result


@dataclass(frozen=True)
class _Step:
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loss_fn: LossFn
    autocast: torch.dtype | None  # None: fp32 steps

    def loss(
        self, module: nn.Module, images: torch.Tensor, labels: torch.Tensor, extras: list[torch.Tensor]
    ) -> torch.Tensor:
        """The loss of one batch, its forward pass under autocast when the run is in mixed precision."""
        if self.autocast is None:
            return self.loss_fn(module, images, labels, *extras)
        with torch.autocast(device_type=images.device.type, dtype=self.autocast):
            return self.loss_fn(module, images, labels, *extras)


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The ``torch.autocast`` dtype of a training precision (``None`` for fp32)."""
    return torch.bfloat16 if precision == "bf16" else None


def precision_autocast(precision: str, device: str) -> torch.autocast:
    """The autocast context of a training precision on ``device`` (disabled for fp32)."""
    dtype = autocast_dtype(precision)
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype, enabled=dtype is not None)


def _run_epoch(
    module: nn.Module,
    batches: DataLoader,
    step: _Step,
    *,
    steps: int,
    result: TrainResult,
    run: _Run,
    deadline: float | None,
) -> tuple[int, bool]:
    """One pass of at most ``steps`` steps; appends its mean loss when it took any.

    Returns:
        The steps taken, and whether the time cap cut the pass short.
    """
    module.train()
    loss_sum, done = 0.0, 0
    cut_short = False
    for index, (batch_images, batch_labels, *batch_extras) in enumerate(batches):
        if index >= steps:
            break
        if deadline is not None and run.clock() >= deadline:
            cut_short = True
            break
        images, labels = batch_images.to(run.device), batch_labels.to(run.device)
        extras = [extra.to(run.device) for extra in batch_extras]
        loss = step.loss(module, images, labels, extras)
        if not torch.isfinite(loss):
            raise DataError(f"{run.description}: the loss became {loss.item()} at step {result.steps}; lower the lr")
        step.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        step.optimizer.step()
        step.scheduler.step()
        loss_sum += float(loss.item())
        done += 1
        result.steps += 1
        result.samples += len(labels)
    if done:
        result.epoch_losses.append(loss_sum / done)
    return done, cut_short


def _score(
    module: nn.Module, dataset: Dataset, config: TrainConfig, run: _Run, *, steps: int, recalibrate: bool = True
) -> HoldoutScore | None:
    """The holdout score after ``steps`` training steps, BatchNorm statistics recomputed first if they are stale
    (and ``recalibrate``)."""
    if run.holdout is None:
        return None
    if recalibrate and batch_norm_is_stale(module, steps):
        recalibrate_batch_norm(module, dataset, config, device=run.device)
    score = score_holdout(module, run.holdout, batch_size=max(config.batch_size, 64), device=run.device)
    module.train()
    return score


def batch_norm_is_stale(module: nn.Module, steps: int, tolerance: float = 0.05) -> bool:
    """Whether more than ``tolerance`` of some BatchNorm's running statistics predate the last ``steps`` steps.

    A running statistic keeps ``(1 - momentum) ** steps`` of what it held ``steps`` steps ago. With the usual
    momentum 0.1 an epoch of 30 or more steps leaves under 5% (recomputing every epoch would cost about a
    quarter of an epoch for nothing); torchvision's MobileNets and EfficientNets use 0.01 and keep 74% after
    30 steps, so their eval-mode accuracy would be near chance; a cumulative average (momentum ``None``) and
    the starting point (``steps=0``, e.g. just after pruning changed the layers' inputs) are always stale.
    """
    return any(
        isinstance(layer, nn.modules.batchnorm._BatchNorm)
        and layer.track_running_stats
        and (layer.momentum is None or (1.0 - layer.momentum) ** steps > tolerance)
        for layer in module.modules()
    )


def _record(result: TrainResult, score: HoldoutScore) -> None:
    result.holdout_top1.append(score.top1)
    result.holdout_loss.append(score.loss)


def _log_epoch(description: str, epoch: int, max_epochs: int, result: TrainResult) -> None:
    holdout = ""
    if result.holdout_top1:
        holdout = f", holdout top-1 {result.holdout_top1[-1]:.4f} (loss {result.holdout_loss[-1]:.4f})"
    logger.info("%s: epoch %d/%d, loss %.4f%s", description, epoch, max_epochs, result.epoch_losses[-1], holdout)


def recalibrate_batch_norm(module: nn.Module, dataset: Dataset, config: TrainConfig, *, device: str = "cpu") -> bool:
    """Recompute BatchNorm running statistics with ``torch.optim.swa_utils.update_bn`` on a seeded subset.

    The forward passes run under the training precision's autocast, as the training steps that accumulated
    the statistics did (bf16: half the time of fp32 passes on a CPU with native bf16; 3.0 against 6.8 s for
    resnet50 at 64 px over 1,024 images on two cores).

    Returns:
        Whether anything was recomputed (``False`` without BatchNorm layers or with the setting at 0).
    """
    has_batch_norm = any(isinstance(layer, nn.modules.batchnorm._BatchNorm) for layer in module.modules())
    if config.bn_recalibration_samples == 0 or not has_batch_norm:
        return False
    size = len(dataset)  # type: ignore[arg-type]
    count = min(config.bn_recalibration_samples, size)
    indices = torch.randperm(size, generator=torch.Generator().manual_seed(config.seed))[:count].tolist()
    # shuffle=True only to drop a last batch of one sample, which BatchNorm in training mode refuses.
    loader = make_loader(Subset(dataset, indices), batch_size=config.batch_size, seed=config.seed, shuffle=True)
    with precision_autocast(config.precision, device):
        torch.optim.swa_utils.update_bn(loader, module, device=torch.device(device))
    return True


def _progress(loader: DataLoader, total: int, description: str) -> DataLoader:
    """Wrap ``loader`` in a tqdm bar on a terminal (tqdm turns itself off when stderr is not a TTY)."""
    from tqdm.auto import tqdm

    return tqdm(loader, total=total, desc=description, leave=False, disable=None)
