"""Training settings (:class:`TrainConfig`) and what a run did (:class:`TrainResult`, with its curve)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mlperf_track.errors import ConfigError
from mlperf_track.spec import TRAIN_PRECISIONS, check_choice, check_positive_float, check_positive_int
from mlperf_track.training.early_stopping import STOP_PATIENCE, STOP_RECOVERED, StoppingRule

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step", "constant", "plateau")


@dataclass(frozen=True)
class TrainConfig:
    """How to train.

    Attributes:
        epochs: Passes over the training split (0: no training).
        batch_size: Samples per optimizer step.
        lr: Peak learning rate.
        optimizer: ``sgd`` (with Nesterov momentum) or ``adamw``.
        schedule: ``cosine`` (to zero over all steps), ``step`` (x0.1 at 2/3 of the steps), ``constant``, or
            ``plateau``: constant, multiplied by ``plateau_factor`` whenever the holdout top-1 has not improved
            for ``plateau_patience`` epochs (needs a holdout; without one it is ``constant``). Under a stopping
            rule "all steps" means the rule's epoch cap.
        momentum: SGD momentum.
        weight_decay: Weight decay (L2 for SGD, decoupled for AdamW).
        label_smoothing: Cross-entropy label smoothing.
        warmup_steps: Linear learning-rate warm-up steps.
        max_steps_per_epoch: Cut each epoch after this many steps (``None``: the whole split); for smoke runs.
        bn_recalibration_samples: After training, recompute BatchNorm running statistics on this many training
            samples (0: off). Short runs need it: torchvision's MobileNet/EfficientNet BatchNorms use momentum
            0.01, so after a few hundred steps their running statistics still mostly hold the initial (0, 1)
            and eval-mode accuracy is chance (measured: mobilenet_v3_small at 32 px on digits, 0.10 top-1).
        plateau_patience: Epochs without a holdout top-1 gain before a ``plateau`` schedule cuts the rate.
        plateau_factor: What a ``plateau`` cut multiplies the rate by, in (0, 1).
        seed: Seed for the initial random state and the data order.
        precision: ``fp32``, or ``bf16``: mixed precision, the forward pass and the loss under ``torch.autocast``
            in bfloat16 (the AMP recipe: the master weights and the optimizer stay fp32, so no loss scaling is
            needed). Holdout scoring and BatchNorm recalibration stay fp32 either way.
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
    plateau_patience: int = 1
    plateau_factor: float = 0.2
    seed: int = 0
    precision: str = "fp32"

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
        check_positive_int("plateau_patience", self.plateau_patience)
        if not 0 < self.plateau_factor < 1:
            raise ConfigError("plateau_factor", self.plateau_factor, "a number in (0, 1)")
        check_choice("precision", self.precision, TRAIN_PRECISIONS)


@dataclass
class TrainResult:
    """What a training run did, with its curve.

    Attributes:
        epochs: Epochs run (an epoch cut short by the time cap counts).
        steps: Optimizer steps taken.
        samples: Training samples seen.
        seconds: Wall-clock time of the loop.
        epoch_losses: Mean training loss of each epoch.
        holdout_top1: Holdout top-1 after ``e`` epochs at index ``e``; index 0 is the model before training
            (empty without a holdout).
        holdout_loss: Holdout mean cross-entropy, indexed like ``holdout_top1``.
        best_epoch: Under a stopping rule, the epoch whose weights were kept (0: the starting weights, which
            no epoch beat); else ``None``.
        stop_reason: ``fixed_epochs``, ``patience``, ``recovered`` (the rule's target reached), ``max_epochs``
            or ``time_cap`` (empty when nothing ran).
        lr_cuts: Epochs (1-based) after which a ``plateau`` schedule cut the learning rate.
        rule: The stopping rule, when there was one.
        precision: The precision the steps ran in (``fp32`` or ``bf16`` mixed precision).
    """

    epochs: int = 0
    steps: int = 0
    samples: int = 0
    seconds: float = 0.0
    epoch_losses: list[float] = field(default_factory=list)
    holdout_top1: list[float] = field(default_factory=list)
    holdout_loss: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    stop_reason: str = ""
    lr_cuts: list[int] = field(default_factory=list)
    rule: StoppingRule | None = None
    precision: str = "fp32"

    @property
    def final_loss(self) -> float | None:
        """Mean loss of the last epoch, or ``None`` when nothing was trained."""
        return self.epoch_losses[-1] if self.epoch_losses else None

    @property
    def converged(self) -> bool | None:
        """Under a stopping rule: whether the holdout top-1 stopped improving or reached the rule's target (not
        a cap); else ``None``."""
        return None if self.rule is None else self.stop_reason in (STOP_PATIENCE, STOP_RECOVERED)

    def budget(self) -> str:
        """One line on the training budget, e.g. ``7 epoch(s), 41.2 s, stopped by patience (best epoch 4)``, with
        ``, bf16 mixed precision`` appended when the steps did not run in fp32."""
        if self.stop_reason == STOP_RECOVERED and self.rule is not None and self.rule.target_top1 is not None:
            why = f"reaching the target holdout top-1 {self.rule.target_top1:.4f}"
        else:
            why = self.stop_reason or "nothing"
        line = f"{self.epochs} epoch(s), {self.seconds:.1f} s, stopped by {why}"
        line += f" (best epoch {self.best_epoch})" if self.best_epoch is not None else ""
        return line + ("" if self.precision == "fp32" else f", {self.precision} mixed precision")
