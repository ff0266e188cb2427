"""Training text models until the holdout loss stops improving: language modelling and sequence classification.

A transformer trained from random initialisation on the offline corpus needs steps, not epochs, as its unit
(one epoch of the corpus is a few hundred steps), so this loop evaluates the holdout split every
``eval_every`` optimizer steps and stops when the holdout loss has not fallen by ``min_improvement`` for
``patience`` evaluations, at ``max_steps``, or at ``max_seconds``; the best checkpoint is restored. The
optimizer is AdamW with a linear warm-up and a cosine decay over ``max_steps``, gradients clipped to norm 1,
the usual recipe for small transformers (nanoGPT, the BERT paper). The data order comes from the project's
seeded loader (:func:`~mlperf_track.training.loop.make_loader`), so a seed gives the same weights on a machine.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mlperf_track.errors import ConfigError, DataError
from mlperf_track.spec import check_positive_float, check_positive_int
from mlperf_track.training.loop import make_loader

logger = logging.getLogger(__name__)

#: ``loss_fn(module, inputs, targets) -> scalar``: the mean loss of a batch.
TextLoss = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]

STOP_PATIENCE = "patience"
STOP_MAX_STEPS = "max_steps"
STOP_TIME_CAP = "time_cap"


@dataclass(frozen=True)
class TextTrainConfig:
    """How to train a text model.

    Attributes:
        max_steps: Optimizer steps at most (also the length of the cosine schedule).
        max_seconds: Wall-time cap, or ``None``.
        eval_every: Steps between two holdout evaluations.
        patience: Evaluations in a row without improvement before stopping.
        min_improvement: Relative fall of the best holdout loss that counts as an improvement.
        batch_size: Sequences per step.
        lr: Peak learning rate.
        warmup_steps: Linear warm-up steps.
        weight_decay: AdamW's decoupled weight decay.
        seed: Seed of the initial random state and the data order.
    """

    max_steps: int = 4000
    max_seconds: float | None = 240.0
    eval_every: int = 100
    patience: int = 4
    min_improvement: float = 0.005
    batch_size: int = 16
    lr: float = 2e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("max_steps", "eval_every", "patience", "batch_size"):
            check_positive_int(name, getattr(self, name))
        if self.max_seconds is not None:
            check_positive_float("max_seconds", self.max_seconds)
        check_positive_float("lr", self.lr)
        if not 0 <= self.min_improvement < 1:
            raise ConfigError("min_improvement", self.min_improvement, "a number in [0, 1)")
        if self.warmup_steps < 0 or self.weight_decay < 0:
            raise ConfigError("warmup_steps/weight_decay", (self.warmup_steps, self.weight_decay), "numbers >= 0")

    def to_dict(self) -> dict[str, object]:
        """The settings (cache keys, tags)."""
        return asdict(self)


@dataclass
class TextTrainResult:
    """What a run did: steps, time, why it stopped, and its holdout curve ``(step, train loss, holdout loss)``."""

    steps: int = 0
    seconds: float = 0.0
    stop_reason: str = ""
    best_step: int = 0
    best_holdout_loss: float = math.inf
    curve: list[tuple[int, float, float]] = field(default_factory=list)


def language_model_loss(module: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy: ``module(inputs)`` is ``(batch, seq, vocab)``, ``targets`` ``(batch, seq)``."""
    logits = module(inputs)
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))


def classification_loss(module: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``(batch, classes)`` logits against ``(batch,)`` labels."""
    return nn.functional.cross_entropy(module(inputs).float(), targets)


def holdout_loss(module: nn.Module, dataset: Dataset, loss_fn: TextLoss, *, batch_size: int, device: str) -> float:
    """Mean of ``loss_fn`` over ``dataset`` (batches weighted by their size), in eval mode."""
    module.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    total = count = 0.0
    with torch.inference_mode():
        for inputs, targets in loader:
            total += float(loss_fn(module, inputs.to(device), targets.to(device))) * len(inputs)
            count += len(inputs)
    if count == 0:
        raise DataError("the holdout split is empty")
    return total / count


def _batches(dataset: Dataset, config: TextTrainConfig) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    epoch = 0
    while True:
        loader = make_loader(dataset, batch_size=config.batch_size, seed=config.seed + epoch, shuffle=True)
        yield from loader
        epoch += 1


def _lr_factor(step: int, config: TextTrainConfig) -> float:
    if step < config.warmup_steps:
        return (step + 1) / (config.warmup_steps + 1)
    progress = (step - config.warmup_steps) / max(config.max_steps - config.warmup_steps, 1)
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def train_text_model(
    module: nn.Module,
    train: Dataset,
    holdout: Dataset,
    config: TextTrainConfig,
    *,
    loss_fn: TextLoss,
    device: str = "cpu",
    description: str = "train",
    clock: Callable[[], float] = time.perf_counter,
) -> TextTrainResult:
    """Train ``module`` in place until the holdout loss stops improving; restore the best weights.

    Args:
        module: The model (every parameter with ``requires_grad`` is trained).
        train: Items ``(inputs, targets)``.
        holdout: Items like ``train``'s, scored every ``config.eval_every`` steps.
        config: Steps, caps, optimizer settings, seed.
        loss_fn: :func:`language_model_loss`, :func:`classification_loss` or a distillation loss.
        device: Where to train.
        description: For the log.
        clock: Seconds (tests inject a fake).

    Returns:
        The run's steps, time, stop reason and holdout curve; the module ends in eval mode on the CPU.

    Raises:
        DataError: An empty split, or a loss that became NaN or infinite.
    """
    if len(train) == 0:  # type: ignore[arg-type]
        raise DataError(f"cannot {description}: the training split is empty")
    torch.manual_seed(config.seed)
    module.to(device).train()
    optimizer = torch.optim.AdamW(
        [p for p in module.parameters() if p.requires_grad], lr=config.lr, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _lr_factor(step, config))
    result = TextTrainResult()
    best_state = copy.deepcopy(module.state_dict())
    start, window_loss, window_steps, stale = clock(), 0.0, 0, 0
    for inputs, targets in _batches(train, config):
        loss = loss_fn(module, inputs.to(device), targets.to(device))
        if not torch.isfinite(loss):
            raise DataError(f"{description}: the loss became {loss.item()} at step {result.steps}; lower the lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        result.steps += 1
        window_loss, window_steps = window_loss + loss.item(), window_steps + 1
        out_of_time = config.max_seconds is not None and clock() - start >= config.max_seconds
        if result.steps % config.eval_every == 0 or result.steps >= config.max_steps or out_of_time:
            score = holdout_loss(module, holdout, loss_fn, batch_size=max(config.batch_size, 16), device=device)
            module.train()
            result.curve.append((result.steps, window_loss / window_steps, score))
            logger.info(
                "%s: step %d, train loss %.4f, holdout loss %.4f",
                description,
                result.steps,
                window_loss / window_steps,
                score,
            )
            window_loss, window_steps = 0.0, 0
            if score < result.best_holdout_loss * (1.0 - config.min_improvement):
                stale = 0
            else:
                stale += 1
            if score < result.best_holdout_loss:
                result.best_holdout_loss, result.best_step = score, result.steps
                best_state = copy.deepcopy(module.state_dict())
            reason = _stop_reason(result.steps, stale, out_of_time, config)
            if reason:
                result.stop_reason = reason
                break
    result.seconds = clock() - start
    module.load_state_dict(best_state)
    module.to("cpu").eval()
    logger.info(
        "%s: stopped at step %d (%s) after %.1f s; best holdout loss %.4f at step %d",
        description,
        result.steps,
        result.stop_reason,
        result.seconds,
        result.best_holdout_loss,
        result.best_step,
    )
    return result


def _stop_reason(steps: int, stale: int, out_of_time: bool, config: TextTrainConfig) -> str | None:
    if stale >= config.patience:
        return STOP_PATIENCE
    if steps >= config.max_steps:
        return STOP_MAX_STEPS
    if out_of_time:
        return STOP_TIME_CAP
    return None
