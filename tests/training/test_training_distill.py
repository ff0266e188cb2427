"""The Hinton distillation loss and the distillation loop."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.nn import functional
from torch.utils.data import TensorDataset

from mlperf_track.engine.accuracy import evaluate_accuracy, module_predictor
from mlperf_track.errors import ConfigError
from mlperf_track.training.distill import distill, distillation_loss, hinton_loss
from mlperf_track.training.loop import TrainConfig, train


def test_hinton_loss_matches_its_formula() -> None:
    torch.manual_seed(0)
    student, teacher = torch.randn(6, 5), torch.randn(6, 5)
    labels = torch.randint(0, 5, (6,))
    temperature, alpha = 3.0, 0.25
    soft_teacher = functional.softmax(teacher / temperature, dim=1)
    log_soft_student = functional.log_softmax(student / temperature, dim=1)
    kl = (soft_teacher * (soft_teacher.log() - log_soft_student)).sum(dim=1).mean()
    expected = alpha * kl * temperature**2 + (1 - alpha) * functional.cross_entropy(student, labels)
    actual = hinton_loss(student, teacher, labels, temperature=temperature, alpha=alpha)
    assert actual.item() == pytest.approx(expected.item(), rel=1e-5)


def test_hinton_loss_limits() -> None:
    torch.manual_seed(0)
    logits, labels = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    hard_only = hinton_loss(logits, torch.randn(4, 3), labels, temperature=2.0, alpha=0.0)
    assert hard_only.item() == pytest.approx(functional.cross_entropy(logits, labels).item())
    same = hinton_loss(logits, logits.clone(), labels, temperature=2.0, alpha=1.0)
    assert same.item() == pytest.approx(0.0, abs=1e-6)


def test_no_gradient_reaches_the_teacher_logits() -> None:
    student = torch.randn(2, 3, requires_grad=True)
    teacher = torch.randn(2, 3, requires_grad=True)
    hinton_loss(student, teacher, torch.tensor([0, 1]), temperature=2.0, alpha=0.5).backward()
    assert student.grad is not None and teacher.grad is None


@pytest.mark.parametrize(("temperature", "alpha", "field"), [(0.0, 0.5, "temperature"), (2.0, 1.5, "alpha")])
def test_bad_settings_are_config_errors(temperature: float, alpha: float, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        hinton_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.tensor([0]), temperature=temperature, alpha=alpha)


def test_student_learns_to_agree_with_the_teacher(
    small_net: torch.nn.Module, halves: TensorDataset, halves_val: TensorDataset
) -> None:
    teacher = small_net
    train(teacher, halves, TrainConfig(epochs=2, batch_size=16, lr=0.01, optimizer="adamw"))
    reference = evaluate_accuracy(module_predictor(teacher), halves_val)
    teacher_weights = copy.deepcopy(teacher.state_dict())
    torch.manual_seed(1)
    student = type(small_net)(width=4)
    before = evaluate_accuracy(module_predictor(student), halves_val, reference=reference).agreement
    result = distill(student, teacher, halves, TrainConfig(epochs=2, batch_size=16, lr=0.01, optimizer="adamw"))
    after = evaluate_accuracy(module_predictor(student), halves_val, reference=reference).agreement
    assert before is not None and after is not None
    assert after >= 0.85 and after > before
    assert result.steps == 2 * (256 // 16)
    assert all(torch.equal(value, teacher.state_dict()[name]) for name, value in teacher_weights.items())


def test_the_teacher_runs_once_per_image_not_once_per_step(small_net: torch.nn.Module, halves: TensorDataset) -> None:
    teacher = small_net
    images_seen: list[int] = []
    teacher.register_forward_hook(lambda _module, inputs, _output: images_seen.append(len(inputs[0])))
    torch.manual_seed(1)
    student = type(small_net)(width=4)
    result = distill(student, teacher, halves, TrainConfig(epochs=3, batch_size=16, lr=0.01, optimizer="adamw"))
    assert result.steps == 3 * (256 // 16)
    assert sum(images_seen) == len(halves)  # one pass over the split, whatever the epochs


def test_distilling_from_stored_teacher_outputs_trains_as_a_per_step_teacher_would(
    small_net: torch.nn.Module, halves: TensorDataset
) -> None:
    teacher = small_net
    train(teacher, halves, TrainConfig(epochs=1, batch_size=16, lr=0.01, optimizer="adamw"))
    config = TrainConfig(epochs=2, batch_size=16, lr=0.01, optimizer="adamw", seed=3)
    torch.manual_seed(1)
    stored = type(small_net)(width=4)
    per_step = copy.deepcopy(stored)
    distill(stored, teacher, halves, config, temperature=2.0, alpha=0.6)
    train(per_step, halves, config, loss_fn=distillation_loss(teacher, temperature=2.0, alpha=0.6))
    for name, value in stored.state_dict().items():
        torch.testing.assert_close(value, per_step.state_dict()[name], rtol=1e-4, atol=1e-5, msg=name)
