"""Training loops: fine-tuning a classifier and distilling a teacher into a student (deterministic, seeded)."""

from __future__ import annotations

from mlperf_track.training.distill import distill, distillation_loss, hinton_loss
from mlperf_track.training.loop import TrainConfig, TrainResult, cross_entropy_loss, make_loader, train

__all__ = [
    "TrainConfig",
    "TrainResult",
    "cross_entropy_loss",
    "distill",
    "distillation_loss",
    "hinton_loss",
    "make_loader",
    "train",
]
