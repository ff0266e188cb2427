"""A small, deterministic supervised training loop (fine-tuning, recovery after pruning, distillation).

Hand-written rather than taken from a trainer library (Lightning, HF Trainer) because the package needs only
a few dozen lines of it and must not pull a training framework into the core install. Determinism: the
model is trained under a fixed ``torch.manual_seed`` and the data order comes from a seeded generator with
``num_workers=0``, so the same seed gives the same weights on the same machine.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from mlperf_track.errors import ConfigError, DataError
from mlperf_track.spec import check_choice, check_positive_float, check_positive_int

logger = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step", "constant")

#: ``loss_fn(module, images, labels) -> scalar loss``; images and labels are already on the device.
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TrainConfig:
    """How to train.

    Attributes:
        epochs: Passes over the training split (0: no training).
        batch_size: Samples per optimizer step.
        lr: Peak learning rate.
        optimizer: ``sgd`` (with Nesterov momentum) or ``adamw``.
        schedule: ``cosine`` (to zero over all steps), ``step`` (x0.1 at 2/3 of the steps) or ``constant``.
        momentum: SGD momentum.
        weight_decay: Weight decay (L2 for SGD, decoupled for AdamW).
        label_smoothing: Cross-entropy label smoothing.
        warmup_steps: Linear learning-rate warm-up steps.
        max_steps_per_epoch: Cut each epoch after this many steps (``None``: the whole split); for smoke runs.
        bn_recalibration_samples: After training, recompute BatchNorm running statistics on this many training
            samples (0: off). Short runs need it: torchvision's MobileNet/EfficientNet BatchNorms use momentum
            0.01, so after a few hundred steps their running statistics still mostly hold the initial (0, 1)
            and eval-mode accuracy is chance (measured: mobilenet_v3_small at 32 px on digits, 0.10 top-1).
        seed: Seed for the initial random state and the data order.
    """

    epochs: int = 1
    batch_size: int = 32
    lr: float = 0.05
    optimizer: str = "sgd"
    schedule: str = "cosine"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    warmup_steps: int = 10
    max_steps_per_epoch: int | None = None
    bn_recalibration_samples: int = 1024
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 0:
            raise ConfigError("epochs", self.epochs, "an integer >= 0")
        check_positive_int("batch_size", self.batch_size)
        check_positive_float("lr", self.lr)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("schedule", self.schedule, SCHEDULES)
        if not 0 <= self.momentum < 1:
            raise ConfigError("momentum", self.momentum, "a number in [0, 1)")
        if self.weight_decay < 0:
            raise ConfigError("weight_decay", self.weight_decay, "a number >= 0")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError("label_smoothing", self.label_smoothing, "a number in [0, 1)")
        if self.warmup_steps < 0:
            raise ConfigError("warmup_steps", self.warmup_steps, "an integer >= 0")
        if self.max_steps_per_epoch is not None:
            check_positive_int("max_steps_per_epoch", self.max_steps_per_epoch)
        if self.bn_recalibration_samples < 0:
            raise ConfigError("bn_recalibration_samples", self.bn_recalibration_samples, "an integer >= 0")


@dataclass
class TrainResult:
    """What a training run did.

    Attributes:
        epochs: Epochs run.
        steps: Optimizer steps taken.
        samples: Training samples seen.
        seconds: Wall-clock time of the loop.
        epoch_losses: Mean training loss of each epoch.
    """

    epochs: int = 0
    steps: int = 0
    samples: int = 0
    seconds: float = 0.0
    epoch_losses: list[float] = field(default_factory=list)

    @property
    def final_loss(self) -> float | None:
        """Mean loss of the last epoch, or ``None`` when nothing was trained."""
        return self.epoch_losses[-1] if self.epoch_losses else None


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
    """Learning-rate multiplier at ``step`` (0-based) of ``total_steps``: linear warm-up, then the schedule."""
    warmup = min(config.warmup_steps, max(total_steps // 4, 0))
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if config.schedule == "constant" or total_steps <= warmup:
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
) -> TrainResult:
    """Train ``module`` in place on ``dataset`` and leave it in eval mode on the CPU.

    Args:
        module: The model; every parameter with ``requires_grad`` is trained.
        dataset: Items ``(image, label)``.
        config: Optimizer, schedule, epochs, seed.
        device: Where to train (``cpu`` or ``cuda``).
        loss_fn: The loss; cross-entropy by default.
        description: Label for the progress bar and the log.

    Returns:
        Steps, samples, time and per-epoch losses.

    Raises:
        DataError: The dataset is empty.
    """
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise DataError(f"cannot {description}: the training split is empty")
    loss_fn = loss_fn or cross_entropy_loss(config.label_smoothing)
    result = TrainResult()
    if config.epochs == 0:
        return result
    torch.manual_seed(config.seed)
    loader = make_loader(dataset, batch_size=config.batch_size, seed=config.seed, shuffle=True)
    steps_per_epoch = len(loader)
    if config.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
    total = steps_per_epoch * config.epochs
    module.to(device).train()
    optimizer = _optimizer(module, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total, config))
    start = time.perf_counter()
    for epoch in range(config.epochs):
        loss_sum = 0.0
        batches = _progress(loader, steps_per_epoch, f"{description} {epoch + 1}/{config.epochs}")
        for index, (batch_images, batch_labels) in enumerate(batches):
            if index >= steps_per_epoch:
                break
            images, labels = batch_images.to(device), batch_labels.to(device)
            loss = loss_fn(module, images, labels)
            if not torch.isfinite(loss):
                raise DataError(f"{description}: the loss became {loss.item()} at step {result.steps}; lower the lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += float(loss.item())
            result.steps += 1
            result.samples += len(labels)
        result.epochs += 1
        result.epoch_losses.append(loss_sum / max(steps_per_epoch, 1))
        logger.info("%s: epoch %d/%d, loss %.4f", description, epoch + 1, config.epochs, result.epoch_losses[-1])
    recalibrate_batch_norm(module, dataset, config, device=device)
    result.seconds = time.perf_counter() - start
    module.to("cpu").eval()
    return result


def recalibrate_batch_norm(module: nn.Module, dataset: Dataset, config: TrainConfig, *, device: str = "cpu") -> bool:
    """Recompute BatchNorm running statistics with ``torch.optim.swa_utils.update_bn`` on a seeded subset.

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
    torch.optim.swa_utils.update_bn(loader, module, device=torch.device(device))
    return True


def _progress(loader: DataLoader, total: int, description: str) -> DataLoader:
    """Wrap ``loader`` in a tqdm bar on a terminal (tqdm turns itself off when stderr is not a TTY)."""
    from tqdm.auto import tqdm

    return tqdm(loader, total=total, desc=description, leave=False, disable=None)
