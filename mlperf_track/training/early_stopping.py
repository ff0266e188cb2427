"""Early stopping on a holdout split: when to stop, which checkpoint to keep, and how the holdout is scored.

The rule is the usual one (Keras' ``EarlyStopping``, Lightning's callback): after every epoch the model is
scored on the holdout split; training stops when the holdout top-1 has not improved for ``patience``
epochs, or at a cap on epochs or on wall time, and the best checkpoint is restored. "Best" is the highest
holdout top-1, ties broken by the lower holdout cross-entropy: on a small holdout (180 images for
``digits``) several epochs often share the top accuracy, and the loss tells them apart. Only a top-1 gain
larger than ``min_delta`` resets the patience, so a saturated holdout accuracy ends the run even while the
loss still creeps down; the one exception is the start: until the top-1 first rises above its value at
epoch 0, a holdout loss 1% below its best also counts, because a model from random initialisation can
need a few epochs to leave chance level (predicting one class) while its falling loss shows it is
learning (seen: tinycnn on 192 digits, top-1 0.094 for three epochs while the loss fell 2.39 -> 2.30).

A rule can also carry a target (Keras' ``baseline`` argument turned around): a variant that retrains to
recover its baseline's accuracy stops as soon as its holdout top-1 reaches the baseline's (epoch 0
included: a variant that lost nothing does not train at all). Training past that point would credit the
variant with accuracy that more training of the baseline would also give.

Written here rather than taken from Lightning or Ignite because the package's training loop is its own
(see :mod:`.loop`) and the rule is a few dozen lines.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mlperf_track.errors import ConfigError
from mlperf_track.spec import check_positive_int

#: Why a run stopped (``TrainResult.stop_reason``).
STOP_PATIENCE = "patience"
STOP_MAX_EPOCHS = "max_epochs"
STOP_TIME_CAP = "time_cap"
STOP_FIXED = "fixed_epochs"
STOP_RECOVERED = "recovered"

#: How far below ``target_top1`` a holdout top-1 still counts as reaching it: half a step of the four decimals
#: the baseline's holdout score is tagged with (a holdout of fewer than 10,000 images moves in larger steps).
TARGET_TOLERANCE = 5e-5

#: Until the holdout top-1 first rises above its starting value, a holdout loss this much (relative) below its
#: best also counts as progress.
LOSS_PROGRESS = 0.01

#: A clock in seconds (only differences matter); :func:`time.perf_counter` unless a test injects one.
Clock = Callable[[], float]


@dataclass(frozen=True)
class StoppingRule:
    """When training on a holdout stops.

    Attributes:
        patience: Stop after this many epochs in a row without a holdout top-1 improvement.
        max_epochs: Never train more epochs than this.
        max_seconds: Never train longer than this (checked before every optimizer step), or ``None``.
        min_delta: A holdout top-1 gain must exceed this to count as an improvement.
        target_top1: Stop as soon as the holdout top-1 reaches this (see the module docstring), or ``None``.
    """

    patience: int = 3
    max_epochs: int = 30
    max_seconds: float | None = 300.0
    min_delta: float = 0.0
    target_top1: float | None = None

    def __post_init__(self) -> None:
        check_positive_int("patience", self.patience)
        check_positive_int("max_epochs", self.max_epochs)
        if self.max_seconds is not None and (
            isinstance(self.max_seconds, bool) or not isinstance(self.max_seconds, int | float) or self.max_seconds <= 0
        ):
            raise ConfigError("max_seconds", self.max_seconds, "a number of seconds > 0, or None for no time cap")
        if (
            isinstance(self.min_delta, bool)
            or not isinstance(self.min_delta, int | float)
            or not 0 <= self.min_delta < 1
        ):
            raise ConfigError("min_delta", self.min_delta, "a number in [0, 1)")
        if self.target_top1 is not None and (
            isinstance(self.target_top1, bool)
            or not isinstance(self.target_top1, int | float)
            or not 0 < self.target_top1 <= 1
        ):
            raise ConfigError("target_top1", self.target_top1, "a top-1 in (0, 1], or None for no target")

    def describe(self) -> str:
        """One line for tags and logs, e.g. ``holdout top-1, patience 3, at most 30 epochs and 300 s``."""
        cap = f"at most {self.max_epochs} epochs" + (
            f" and {self.max_seconds:g} s" if self.max_seconds is not None else ""
        )
        delta = f", min gain {self.min_delta:g}" if self.min_delta else ""
        target = f", or once it reaches {self.target_top1:.4f}" if self.target_top1 is not None else ""
        return (
            f"early stopping on holdout top-1 (ties: lower holdout loss), patience {self.patience}{delta}{target}, "
            f"{cap}"
        )

    def reached(self, score: HoldoutScore) -> bool:
        """Whether ``score`` reaches the rule's target (never without one)."""
        return self.target_top1 is not None and score.top1 >= self.target_top1 - TARGET_TOLERANCE

    def to_dict(self) -> dict[str, object]:
        """The rule's fields (for cache keys and JSON)."""
        return asdict(self)


@dataclass(frozen=True)
class HoldoutScore:
    """A model's top-1 and mean cross-entropy on the holdout split."""

    top1: float
    loss: float

    def beats(self, other: HoldoutScore | None) -> bool:
        """Higher top-1, or the same top-1 with a lower loss."""
        if other is None:
            return True
        return self.top1 > other.top1 or (self.top1 == other.top1 and self.loss < other.loss)


def score_holdout(module: nn.Module, holdout: Dataset, *, batch_size: int, device: str) -> HoldoutScore:
    """Top-1 and mean cross-entropy of ``module`` (in eval mode) on ``holdout``; the module is left in eval mode."""
    module.eval()
    loader = DataLoader(holdout, batch_size=batch_size, shuffle=False, num_workers=0)
    hits = total = 0
    loss_sum = 0.0
    with torch.inference_mode():
        for images, batch_labels in loader:
            labels = torch.as_tensor(batch_labels, dtype=torch.int64).to(device)
            logits = module(images.to(device)).float()
            loss_sum += float(nn.functional.cross_entropy(logits, labels, reduction="sum"))
            hits += int((logits.argmax(dim=1) == labels).sum())
            total += len(labels)
    if total == 0:
        return HoldoutScore(top1=math.nan, loss=math.nan)
    return HoldoutScore(top1=hits / total, loss=loss_sum / total)


class EarlyStopping:
    """Follows the holdout scores of one run: the best one, its checkpoint, and whether to stop.

    Args:
        rule: The stopping rule.
    """

    def __init__(self, rule: StoppingRule) -> None:
        self.rule = rule
        self.best: HoldoutScore | None = None
        self.best_epoch: int | None = None
        self.epochs_without_gain = 0
        self._checkpoint: dict[str, torch.Tensor] | None = None
        self._best_top1 = -math.inf
        self._best_loss = math.inf
        self._start_top1: float | None = None

    def update(self, module: nn.Module, epoch: int, score: HoldoutScore) -> bool:
        """Record ``score`` after ``epoch`` epochs (0: the starting point); keep a copy of the best weights.

        Returns:
            Whether the run progressed, which resets the patience: a top-1 gain larger than ``min_delta``
            or, while the top-1 has not yet risen above its starting value, a holdout loss at least
            :data:`LOSS_PROGRESS` below its best (see the module docstring).
        """
        if score.beats(self.best):
            self.best, self.best_epoch = score, epoch
            self._checkpoint = {
                name: value.detach().to("cpu", copy=True) for name, value in module.state_dict().items()
            }
        if self._start_top1 is None:
            self._start_top1 = score.top1
        left_start = self._best_top1 > self._start_top1 + self.rule.min_delta
        gained = score.top1 > self._best_top1 + self.rule.min_delta or (
            not left_start and score.loss < self._best_loss * (1.0 - LOSS_PROGRESS)
        )
        self._best_top1 = max(self._best_top1, score.top1)
        self._best_loss = min(self._best_loss, score.loss)
        self.epochs_without_gain = 0 if gained else self.epochs_without_gain + 1
        return gained

    def stop_reason(self, epochs_done: int) -> str | None:
        """:data:`STOP_RECOVERED`, :data:`STOP_PATIENCE` or :data:`STOP_MAX_EPOCHS` when training should end now
        (after ``epochs_done`` epochs; 0: only the starting point was scored), else ``None``."""
        if self.best is not None and self.rule.reached(self.best):
            return STOP_RECOVERED
        if epochs_done == 0:
            return None
        if self.epochs_without_gain >= self.rule.patience:
            return STOP_PATIENCE
        if epochs_done >= self.rule.max_epochs:
            return STOP_MAX_EPOCHS
        return None

    def restore(self, module: nn.Module) -> bool:
        """Load the best checkpoint into ``module``; ``False`` when no epoch was scored."""
        if self._checkpoint is None:
            return False
        module.load_state_dict(self._checkpoint)
        return True
