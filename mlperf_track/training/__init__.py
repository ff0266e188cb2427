"""Training loops: fine-tuning a classifier and distilling a teacher into a student (deterministic, seeded),
for a fixed number of epochs or until the holdout accuracy stops improving (early stopping)."""

from __future__ import annotations

from mlperf_track.training.config import TrainConfig, TrainResult
from mlperf_track.training.distill import distill, distillation_loss, hinton_loss
from mlperf_track.training.early_stopping import StoppingRule
from mlperf_track.training.loop import cross_entropy_loss, make_loader, train, train_until_converged

__all__ = [
    "StoppingRule",
    "TrainConfig",
    "TrainResult",
    "cross_entropy_loss",
    "distill",
    "distillation_loss",
    "hinton_loss",
    "make_loader",
    "train",
    "train_until_converged",
]
