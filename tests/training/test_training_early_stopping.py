"""Early stopping on a holdout: it stops before the cap, keeps the best checkpoint, and honours the time cap."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from mlperf_track.errors import ConfigError, DataError
from mlperf_track.training.distill import distill
from mlperf_track.training.early_stopping import (
    STOP_FIXED,
    STOP_MAX_EPOCHS,
    STOP_PATIENCE,
    STOP_RECOVERED,
    STOP_TIME_CAP,
    HoldoutScore,
    StoppingRule,
    score_holdout,
)
from mlperf_track.training.loop import TrainConfig, train, train_until_converged

FAST = TrainConfig(batch_size=16, lr=0.005, optimizer="adamw", schedule="plateau", warmup_steps=0)


class TickingClock:
    """A fake clock in seconds that moves ``tick`` every time it is read (each optimizer step reads it once)."""

    def __init__(self, tick: float) -> None:
        self.now = 0.0
        self.tick = tick
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        value = self.now
        self.now += self.tick
        return value


def _best_index(result_top1: list[float], result_loss: list[float]) -> int:
    scores = [HoldoutScore(top1, loss) for top1, loss in zip(result_top1, result_loss, strict=True)]
    best = 0
    for index, score in enumerate(scores):
        if score.beats(scores[best]):
            best = index
    return best


def test_stops_on_patience_before_the_cap_and_restores_the_best_checkpoint(
    small_net: nn.Module, halves: TensorDataset, halves_val: TensorDataset
) -> None:
    rule = StoppingRule(patience=2, max_epochs=40, max_seconds=None)
    result = train_until_converged(small_net, halves, halves_val, FAST, rule)

    assert result.stop_reason == STOP_PATIENCE and result.converged
    assert result.epochs < rule.max_epochs
    assert len(result.holdout_top1) == result.epochs + 1 == len(result.epoch_losses) + 1  # index 0: before training
    assert max(result.holdout_top1) >= 0.9 > result.holdout_top1[0]
    assert result.best_epoch == _best_index(result.holdout_top1, result.holdout_loss)
    assert result.best_epoch is not None
    restored = score_holdout(small_net, halves_val, batch_size=64, device="cpu")
    assert restored.top1 == result.holdout_top1[result.best_epoch]
    assert restored.loss == pytest.approx(result.holdout_loss[result.best_epoch], rel=1e-6)
    assert not small_net.training


def test_the_time_cap_cuts_an_epoch_short(
    small_net: nn.Module, halves: TensorDataset, halves_val: TensorDataset
) -> None:
    clock = TickingClock(tick=1.0)  # every optimizer step "takes" one second; 16 steps per epoch
    rule = StoppingRule(patience=5, max_epochs=40, max_seconds=20.0)
    result = train_until_converged(small_net, halves, halves_val, FAST, rule, clock=clock)

    assert result.stop_reason == STOP_TIME_CAP and result.converged is False
    assert result.epochs == 2 and result.steps < 2 * 16
    assert result.seconds <= rule.max_seconds + 2  # the check runs before every step; a holdout score follows
    assert result.best_epoch == _best_index(result.holdout_top1, result.holdout_loss)


def test_a_worse_last_epoch_is_rolled_back_to_the_best(
    small_net: nn.Module, halves: TensorDataset, halves_val: TensorDataset
) -> None:
    # Learn the task for two epochs, then the opposite labels: the best epoch is one of the first two.
    calls = {"steps": 0}

    def loss_fn(module: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        calls["steps"] += 1
        target = labels if calls["steps"] <= 2 * 16 else 1 - labels
        return nn.functional.cross_entropy(module(images), target)

    config = dataclasses.replace(FAST, lr=0.05, schedule="constant")
    result = train_until_converged(
        small_net, halves, halves_val, config, StoppingRule(patience=2, max_seconds=None), loss_fn=loss_fn
    )
    assert result.best_epoch is not None
    assert 1 <= result.best_epoch <= 2 < result.epochs
    best = HoldoutScore(result.holdout_top1[result.best_epoch], result.holdout_loss[result.best_epoch])
    pairs = zip(result.holdout_top1[3:], result.holdout_loss[3:], strict=True)
    later = [HoldoutScore(top1, loss) for top1, loss in pairs]
    assert later and not any(score.beats(best) for score in later)
    restored = score_holdout(small_net, halves_val, batch_size=64, device="cpu")
    assert restored.top1 == result.holdout_top1[result.best_epoch]
    assert restored.loss == pytest.approx(result.holdout_loss[result.best_epoch], rel=1e-6)
    assert restored.loss != pytest.approx(result.holdout_loss[-1], rel=1e-3)  # not the last epoch's weights


def test_a_starting_point_no_epoch_beats_is_kept(
    small_net: nn.Module, halves: TensorDataset, halves_val: TensorDataset
) -> None:
    train(small_net, halves, TrainConfig(epochs=3, batch_size=16, lr=0.05, optimizer="adamw"))
    before = copy.deepcopy(small_net.state_dict())
    start = score_holdout(small_net, halves_val, batch_size=64, device="cpu")
    # A harmful "fine-tune": it learns the opposite labels, so every epoch scores worse than the start.
    flipped = TensorDataset(halves.tensors[0], 1 - halves.tensors[1])
    harmful = dataclasses.replace(FAST, lr=0.05)
    result = train_until_converged(small_net, flipped, halves_val, harmful, StoppingRule(patience=2, max_seconds=None))

    assert result.best_epoch == 0 and result.epochs == 2
    assert result.holdout_top1[0] == start.top1 > max(result.holdout_top1[1:])
    for name, value in before.items():
        assert torch.equal(value, small_net.state_dict()[name]), name


def test_plateau_schedule_cuts_the_rate_when_the_holdout_stalls(
    small_net: nn.Module, halves: TensorDataset, halves_val: TensorDataset
) -> None:
    frozen = TrainConfig(batch_size=16, lr=1e-9, optimizer="adamw", schedule="plateau", plateau_patience=1)
    result = train_until_converged(small_net, halves, halves_val, frozen, StoppingRule(patience=3, max_seconds=None))
    assert result.lr_cuts == [1, 2] and result.stop_reason == STOP_PATIENCE and result.epochs == 3


def test_the_epoch_cap_ends_a_run_that_keeps_improving(
    small_net: nn.Module, halves: TensorDataset, halves_val: TensorDataset
) -> None:
    result = train_until_converged(small_net, halves, halves_val, FAST, StoppingRule(max_epochs=1, max_seconds=None))
    assert result.stop_reason == STOP_MAX_EPOCHS and result.epochs == 1 and result.converged is False


def test_fixed_epochs_record_the_curve_and_select_nothing(
    small_net: nn.Module, halves: TensorDataset, halves_val: TensorDataset
) -> None:
    result = train(small_net, halves, TrainConfig(epochs=2, batch_size=16, lr=0.01), holdout=halves_val)
    assert result.stop_reason == STOP_FIXED and result.best_epoch is None and result.converged is None
    assert len(result.holdout_top1) == 3 and len(result.epoch_losses) == 2


def test_distillation_stops_on_the_student_holdout_score(
    small_net: nn.Module, halves: TensorDataset, halves_val: TensorDataset
) -> None:
    teacher = copy.deepcopy(small_net)
    train(teacher, halves, TrainConfig(epochs=2, batch_size=16, lr=0.05, optimizer="adamw"))
    torch.manual_seed(1)
    student = type(small_net)()
    rule = StoppingRule(patience=2, max_epochs=30, max_seconds=None)
    result = distill(student, teacher, halves, FAST, holdout=halves_val, rule=rule)
    assert result.stop_reason == STOP_PATIENCE and result.best_epoch is not None
    assert score_holdout(student, halves_val, batch_size=64, device="cpu").top1 == max(result.holdout_top1)


def test_an_empty_holdout_is_refused(small_net: nn.Module, halves: TensorDataset) -> None:
    empty = TensorDataset(torch.zeros(0, 3, 8, 8), torch.zeros(0, dtype=torch.int64))
    with pytest.raises(DataError, match="holdout split is empty"):
        train_until_converged(small_net, halves, empty, FAST, StoppingRule())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("patience", 0),
        ("max_epochs", 0),
        ("max_seconds", 0.0),
        ("max_seconds", "1"),
        ("min_delta", 1.0),
        ("target_top1", 0.0),
        ("target_top1", 1.5),
        ("target_top1", True),
    ],
)
def test_bad_rules_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        StoppingRule(**{field: value})  # type: ignore[arg-type]


def test_rule_description_names_the_caps() -> None:
    text = StoppingRule(patience=4, max_epochs=12, max_seconds=90).describe()
    assert "patience 4" in text and "12 epochs" in text and "90 s" in text
    assert "s" not in StoppingRule(max_seconds=None).describe().split("epochs")[-1]


def test_stale_batch_norm_statistics_are_recomputed_before_scoring(small_net: nn.Module) -> None:
    from mlperf_track.training.loop import batch_norm_is_stale

    assert batch_norm_is_stale(small_net, steps=0)  # the starting point, e.g. just after pruning
    assert batch_norm_is_stale(small_net, steps=16)  # momentum 0.1: 0.9 ** 16 = 19% still old
    assert not batch_norm_is_stale(small_net, steps=40)  # 1.5% old
    small_net.features[1].momentum = 0.01  # type: ignore[index]  # like torchvision's MobileNets
    assert batch_norm_is_stale(small_net, steps=40)
    assert not batch_norm_is_stale(nn.Sequential(nn.Linear(2, 2)), steps=0)  # no BatchNorm


@pytest.mark.parametrize("fresh_head", [False, True])
def test_a_fresh_head_scores_its_start_as_it_stands(
    small_net: nn.Module, halves: TensorDataset, halves_val: TensorDataset, fresh_head: bool
) -> None:
    """A just-initialised head cannot make the start the best: epoch 0 is scored without the BatchNorm
    recomputation (the costly part); any other start is scored with it."""
    from mlperf_track.training.loop import recalibrate_batch_norm

    as_it_stands = score_holdout(copy.deepcopy(small_net), halves_val, batch_size=64, device="cpu")
    recalibrated_net = copy.deepcopy(small_net)
    recalibrate_batch_norm(recalibrated_net, halves, FAST)
    recalibrated = score_holdout(recalibrated_net, halves_val, batch_size=64, device="cpu")
    assert as_it_stands.loss != pytest.approx(recalibrated.loss, rel=1e-4)  # the two starts can be told apart
    rule = StoppingRule(patience=1, max_epochs=1, max_seconds=None)
    result = train_until_converged(small_net, halves, halves_val, FAST, rule, fresh_head=fresh_head)
    expected = as_it_stands if fresh_head else recalibrated
    assert result.holdout_loss[0] == pytest.approx(expected.loss, rel=1e-6)
    assert len(result.holdout_top1) == 2  # epoch 0 is still on the curve


def test_a_falling_loss_counts_as_progress_only_until_the_top1_leaves_its_start(small_net: nn.Module) -> None:
    from mlperf_track.training.early_stopping import EarlyStopping

    stopper = EarlyStopping(StoppingRule(patience=2, max_seconds=None))
    scores = [
        (0.1, 2.40),  # epoch 0: chance
        (0.1, 2.30),  # still chance, but the loss fell 4%: learning, not stalled
        (0.1, 2.29),  # the loss fell under 1%: a stalled epoch
        (0.1, 2.20),  # learning again
        (0.5, 1.50),  # the top-1 left its start
        (0.5, 1.00),  # from now on only the top-1 counts, however much the loss falls
        (0.5, 0.50),
    ]
    progress = [stopper.update(small_net, epoch, HoldoutScore(*score)) for epoch, score in enumerate(scores)]
    assert progress == [True, True, False, True, True, False, False]
    assert stopper.stop_reason(len(scores) - 1) == STOP_PATIENCE
    assert stopper.best_epoch == 6  # the same top-1 with the lowest loss is still the best checkpoint


def test_a_target_stops_the_run_once_the_holdout_reaches_it(
    small_net: nn.Module, halves: TensorDataset, halves_val: TensorDataset
) -> None:
    untargeted = copy.deepcopy(small_net)
    free = train_until_converged(untargeted, halves, halves_val, FAST, StoppingRule(patience=2, max_seconds=None))
    first_epoch = free.holdout_top1[1]
    assert free.epochs > 1 and first_epoch > free.holdout_top1[0]  # the free run goes on after epoch 1
    rule = StoppingRule(patience=2, max_seconds=None, target_top1=first_epoch)
    result = train_until_converged(small_net, halves, halves_val, FAST, rule)
    assert result.stop_reason == STOP_RECOVERED and result.converged
    assert result.epochs == 1 and result.best_epoch == 1
    assert "reaching the target holdout top-1" in result.budget() and f"{first_epoch:.4f}" in rule.describe()


def test_a_start_that_already_reaches_the_target_is_not_trained(
    small_net: nn.Module, halves: TensorDataset, halves_val: TensorDataset
) -> None:
    train(small_net, halves, TrainConfig(epochs=2, batch_size=16, lr=0.05, optimizer="adamw"))
    start = score_holdout(small_net, halves_val, batch_size=64, device="cpu")
    before = copy.deepcopy(small_net.state_dict())
    rule = StoppingRule(patience=2, max_seconds=None, target_top1=round(start.top1, 4))
    result = train_until_converged(small_net, halves, halves_val, FAST, rule)
    assert result.stop_reason == STOP_RECOVERED and result.epochs == 0 and result.steps == 0
    assert result.best_epoch == 0 and result.holdout_top1 == [start.top1]
    for name, value in before.items():
        assert torch.equal(value, small_net.state_dict()[name]), name


def test_a_target_out_of_reach_leaves_the_patience_rule_in_charge(
    small_net: nn.Module, halves: TensorDataset, halves_val: TensorDataset
) -> None:
    frozen = TrainConfig(batch_size=16, lr=1e-9, optimizer="adamw", schedule="plateau")
    rule = StoppingRule(patience=2, max_seconds=None, target_top1=1.0)
    result = train_until_converged(small_net, halves, halves_val, frozen, rule)
    assert result.stop_reason == STOP_PATIENCE and result.epochs == 2
