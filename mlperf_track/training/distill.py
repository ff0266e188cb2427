"""Knowledge distillation with the Hinton et al. (2015) loss."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional

from mlperf_track.errors import ConfigError
from mlperf_track.training.early_stopping import StoppingRule
from mlperf_track.training.loop import LossFn, TrainConfig, TrainResult, train, train_until_converged


def hinton_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """``alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, labels)``.

    The ``T^2`` factor keeps the soft-target gradients on the same scale as the hard-label ones when ``T``
    changes (Hinton et al., "Distilling the Knowledge in a Neural Network", section 2).

    Args:
        student_logits: ``(batch, classes)``.
        teacher_logits: ``(batch, classes)``; no gradient flows into them.
        labels: ``(batch,)`` class indices.
        temperature: ``T > 0``; higher softens both distributions.
        alpha: Weight of the soft-target term, in ``[0, 1]``.
    """
    check_distillation(temperature, alpha)
    soft = functional.kl_div(
        functional.log_softmax(student_logits / temperature, dim=1),
        functional.log_softmax(teacher_logits.detach() / temperature, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    hard = functional.cross_entropy(student_logits, labels)
    return alpha * soft * temperature**2 + (1.0 - alpha) * hard


def check_distillation(temperature: float, alpha: float) -> None:
    """Raise :class:`ConfigError` for ``temperature <= 0`` or ``alpha`` outside ``[0, 1]``."""
    if not temperature > 0:
        raise ConfigError("temperature", temperature, "a number > 0")
    if not 0 <= alpha <= 1:
        raise ConfigError("alpha", alpha, "a number in [0, 1]")


def distillation_loss(teacher: nn.Module, *, temperature: float, alpha: float) -> LossFn:
    """A training loss that runs ``teacher`` (frozen, eval mode) on each batch and applies :func:`hinton_loss`."""
    check_distillation(temperature, alpha)

    def loss_fn(student: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            teacher_logits = teacher(images)
        return hinton_loss(student(images), teacher_logits, labels, temperature=temperature, alpha=alpha)

    return loss_fn


def distill(
    student: nn.Module,
    teacher: nn.Module,
    dataset: torch.utils.data.Dataset,
    config: TrainConfig,
    *,
    device: str = "cpu",
    temperature: float = 4.0,
    alpha: float = 0.7,
    holdout: torch.utils.data.Dataset | None = None,
    rule: StoppingRule | None = None,
    fresh_head: bool = False,
) -> TrainResult:
    """Train ``student`` in place to match ``teacher`` (and the labels) on ``dataset``.

    The teacher is put in eval mode and moved to ``device`` for the run, then back to the CPU; its weights
    do not change. Returns the student's training result; the student ends in eval mode on the CPU.

    Args:
        student: Trained in place.
        teacher: Frozen.
        dataset: The training split.
        config: Optimizer, schedule, epochs (without ``rule``), seed.
        device: Where to train.
        temperature: Softmax temperature of the soft targets.
        alpha: Weight of the soft-target term.
        holdout: The holdout split: scored after every epoch (the student's top-1 and cross-entropy).
        rule: With a holdout, train until the student's holdout top-1 stops improving (best epoch kept)
            instead of ``config.epochs`` epochs.
        fresh_head: The student's classifier was just initialised (see
            :func:`~mlperf_track.training.loop.train_until_converged`).
    """
    check_distillation(temperature, alpha)
    teacher.eval().to(device)
    for param in teacher.parameters():
        param.requires_grad_(False)
    try:
        loss = distillation_loss(teacher, temperature=temperature, alpha=alpha)
        if rule is not None and holdout is not None:
            return train_until_converged(
                student,
                dataset,
                holdout,
                config,
                rule,
                device=device,
                loss_fn=loss,
                description="distill",
                fresh_head=fresh_head,
            )
        return train(student, dataset, config, device=device, loss_fn=loss, description="distill", holdout=holdout)
    finally:
        teacher.cpu()
