"""Training text models until the holdout loss stops improving."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from mlperf_track.errors import ConfigError, DataError
from mlperf_track.training.text import (
    STOP_MAX_STEPS,
    STOP_PATIENCE,
    STOP_TIME_CAP,
    TextTrainConfig,
    classification_loss,
    language_model_loss,
    train_text_model,
)


class TinyLM(nn.Module):
    def __init__(self, vocab: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 16)
        self.out = nn.Linear(16, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(self.embed(ids))


def counting_windows(count: int) -> TensorDataset:
    """Sequences where the next token is always the current one plus one (mod 16): learnable."""
    start = torch.randint(0, 16, (count, 1), generator=torch.Generator().manual_seed(count))
    tokens = (start + torch.arange(9)) % 16
    return TensorDataset(tokens[:, :-1], tokens[:, 1:])


def test_a_language_model_learns_and_stops_on_a_holdout_plateau() -> None:
    model = TinyLM()
    train, holdout = counting_windows(64), counting_windows(16)
    with torch.no_grad():
        before = float(language_model_loss(model, *holdout.tensors))
    config = TextTrainConfig(
        max_steps=2000, max_seconds=None, eval_every=20, patience=2, min_improvement=0.3, lr=1e-2, warmup_steps=5
    )
    result = train_text_model(model, train, holdout, config, loss_fn=language_model_loss)
    assert result.stop_reason == STOP_PATIENCE and result.steps < 2000
    assert result.best_holdout_loss < before / 10
    with torch.no_grad():
        after = float(language_model_loss(model, *holdout.tensors))
    assert after == pytest.approx(result.best_holdout_loss, rel=1e-4)
    assert not model.training and [step for step, _, _ in result.curve][:2] == [20, 40]


def test_the_step_and_time_caps_stop_training() -> None:
    train, holdout = counting_windows(32), counting_windows(8)
    config = TextTrainConfig(max_steps=7, max_seconds=None, eval_every=100, patience=3, warmup_steps=0)
    assert train_text_model(TinyLM(), train, holdout, config, loss_fn=language_model_loss).stop_reason == STOP_MAX_STEPS
    ticks = iter(float(second) for second in range(10_000))
    capped = TextTrainConfig(max_steps=1000, max_seconds=5.0, eval_every=100, warmup_steps=0)
    result = train_text_model(TinyLM(), train, holdout, capped, loss_fn=language_model_loss, clock=lambda: next(ticks))
    assert result.stop_reason == STOP_TIME_CAP and result.steps <= 6


def test_a_classifier_trains_with_the_classification_loss() -> None:
    inputs = torch.randint(0, 16, (48, 6), generator=torch.Generator().manual_seed(0))
    labels = (inputs[:, 0] >= 8).long()
    model = nn.Sequential(nn.Embedding(16, 8), nn.Flatten(), nn.Linear(48, 2))
    data = TensorDataset(inputs, labels)
    config = TextTrainConfig(max_steps=200, max_seconds=None, eval_every=25, patience=2, lr=1e-2, warmup_steps=5)
    result = train_text_model(model, data, data, config, loss_fn=classification_loss)
    assert result.best_holdout_loss < 0.3


def test_bad_settings_and_empty_splits_are_refused() -> None:
    with pytest.raises(ConfigError, match="eval_every"):
        TextTrainConfig(eval_every=0)
    with pytest.raises(DataError, match="empty"):
        train_text_model(
            TinyLM(),
            TensorDataset(torch.zeros(0, 4).long(), torch.zeros(0, 4).long()),
            counting_windows(4),
            TextTrainConfig(),
            loss_fn=language_model_loss,
        )
