"""The training loop: it learns, it is deterministic, it honours its settings, and it refuses bad input."""

from __future__ import annotations

import copy
import dataclasses
import itertools

import pytest
import torch
from torch.utils.data import TensorDataset

from mlperf_track.engine.accuracy import evaluate_accuracy, module_predictor
from mlperf_track.errors import ConfigError, DataError
from mlperf_track.training.loop import TrainConfig, lr_factor, make_loader, recalibrate_batch_norm, train

FAST = TrainConfig(epochs=2, batch_size=16, lr=0.01, optimizer="adamw")


def test_training_learns_the_task(small_net: torch.nn.Module, halves: TensorDataset, halves_val: TensorDataset) -> None:
    before = evaluate_accuracy(module_predictor(small_net), halves_val).top1
    result = train(small_net, halves, FAST)
    after = evaluate_accuracy(module_predictor(small_net), halves_val).top1
    assert after >= 0.9 > before
    assert result.epochs == 2 and result.steps == 2 * (256 // 16) and result.samples == 2 * 256
    assert result.epoch_losses[1] < result.epoch_losses[0]
    assert result.final_loss == result.epoch_losses[-1]
    assert result.seconds > 0
    assert not small_net.training


def test_same_seed_gives_the_same_weights(small_net: torch.nn.Module, halves: TensorDataset) -> None:
    first, second, other = copy.deepcopy(small_net), copy.deepcopy(small_net), copy.deepcopy(small_net)
    config = TrainConfig(epochs=1, batch_size=32, lr=0.01, seed=3)
    train(first, halves, config)
    torch.manual_seed(123)  # the caller's random state must not matter
    train(second, halves, config)
    train(other, halves, TrainConfig(epochs=1, batch_size=32, lr=0.01, seed=4))
    for name, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[name]), name
    assert not torch.equal(first.fc.weight, other.fc.weight)  # type: ignore[union-attr,arg-type]


def test_max_steps_and_zero_epochs(small_net: torch.nn.Module, halves: TensorDataset) -> None:
    result = train(small_net, halves, TrainConfig(epochs=2, batch_size=8, max_steps_per_epoch=3))
    assert result.steps == 6 and result.samples == 48
    weights = copy.deepcopy(small_net.state_dict())
    nothing = train(small_net, halves, TrainConfig(epochs=0))
    assert nothing.steps == 0 and nothing.final_loss is None
    assert all(torch.equal(value, small_net.state_dict()[name]) for name, value in weights.items())


@pytest.mark.parametrize("schedule", ["cosine", "step", "constant"])
def test_lr_schedule_warms_up_then_follows_the_schedule(schedule: str) -> None:
    config = TrainConfig(schedule=schedule, warmup_steps=4)
    factors = [lr_factor(step, 100, config) for step in range(100)]
    assert factors[0] < factors[3] < 1.0  # linear warm-up
    assert factors[4] == pytest.approx(1.0)
    if schedule == "cosine":
        assert factors[-1] < 0.01 and all(a >= b for a, b in itertools.pairwise(factors[4:]))
    elif schedule == "step":
        assert factors[-1] == pytest.approx(0.1) and factors[50] == pytest.approx(1.0)
    else:
        assert factors[-1] == pytest.approx(1.0)


def test_loader_order_depends_only_on_the_seed(halves: TensorDataset) -> None:
    def order(seed: int) -> list[int]:
        return [
            int(label) for _, labels in make_loader(halves, batch_size=64, seed=seed, shuffle=True) for label in labels
        ]

    assert order(1) == order(1) != order(2)
    # A last batch of one sample would break BatchNorm in training mode: it is dropped.
    assert [len(labels) for _, labels in make_loader(make_small(33), batch_size=32, seed=0, shuffle=True)] == [32]


def make_small(count: int) -> TensorDataset:
    return TensorDataset(torch.zeros(count, 3, 8, 8), torch.zeros(count, dtype=torch.int64))


@pytest.mark.parametrize(
    ("field", "value"),
    [("epochs", -1), ("batch_size", 0), ("lr", 0.0), ("optimizer", "adam"), ("schedule", "linear"), ("momentum", 1.0)],
)
def test_bad_settings_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**{field: value})  # type: ignore[arg-type]


def test_empty_dataset_and_diverging_loss_are_data_errors(small_net: torch.nn.Module) -> None:
    with pytest.raises(DataError, match="empty"):
        train(small_net, make_small(0), FAST)
    with pytest.raises(DataError, match="loss became nan"):
        train(
            small_net, make_small(64), FAST, loss_fn=lambda module, images, labels: module(images).sum() * float("nan")
        )


@pytest.mark.parametrize("samples", [0, 256])
def test_batch_norm_statistics_are_recalibrated_after_training(
    small_net: torch.nn.Module, halves: TensorDataset, samples: int
) -> None:
    batch_norm = small_net.features[1]  # type: ignore[index]
    batch_norm.momentum = 0.001  # like torchvision's MobileNets (0.01): running stats barely move in a short run
    train(small_net, halves, TrainConfig(epochs=1, batch_size=32, lr=0.01, bn_recalibration_samples=samples))
    with torch.no_grad():
        features = small_net.features[0](halves.tensors[0])  # type: ignore[index]
    actual_mean = features.mean(dim=(0, 2, 3))
    error = (batch_norm.running_mean - actual_mean).abs().max().item()
    if samples:
        assert error < 1e-4  # every sample was used: the running mean is the features' mean
    else:
        assert error > 1e-2


@pytest.mark.parametrize(("precision", "autocast"), [("fp32", None), ("bf16", torch.bfloat16)])
def test_the_training_precision_decides_the_autocast_of_every_step(
    small_net: torch.nn.Module, halves: TensorDataset, precision: str, autocast: torch.dtype | None
) -> None:
    seen: list[torch.dtype | None] = []

    def loss_fn(module: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        on = torch.is_autocast_enabled(images.device.type)
        seen.append(torch.get_autocast_dtype(images.device.type) if on else None)
        return torch.nn.functional.cross_entropy(module(images), labels)

    config = TrainConfig(epochs=1, batch_size=32, lr=0.01, precision=precision)
    result = train(small_net, halves, config, loss_fn=loss_fn)
    assert seen and set(seen) == {autocast}
    assert result.precision == precision
    assert ("bf16 mixed precision" in result.budget()) == (precision == "bf16")
    assert all(param.dtype == torch.float32 for param in small_net.parameters())  # master weights stay fp32
    assert not torch.is_autocast_enabled("cpu")  # nothing leaks out of the loop


def test_bf16_mixed_precision_still_learns(
    small_net: torch.nn.Module, halves: TensorDataset, halves_val: TensorDataset
) -> None:
    train(small_net, halves, dataclasses.replace(FAST, precision="bf16"))
    assert evaluate_accuracy(module_predictor(small_net), halves_val).top1 >= 0.9


def test_an_unknown_training_precision_is_refused() -> None:
    with pytest.raises(ConfigError, match="precision"):
        TrainConfig(precision="fp16")


@pytest.mark.parametrize(("precision", "autocast"), [("fp32", None), ("bf16", torch.bfloat16)])
def test_batch_norm_is_recalibrated_in_the_training_precision(
    small_net: torch.nn.Module, halves: TensorDataset, precision: str, autocast: torch.dtype | None
) -> None:
    config = TrainConfig(epochs=1, batch_size=32, lr=0.01, precision=precision)
    train(small_net, halves, config)
    seen: list[torch.dtype | None] = []

    def record(_module: torch.nn.Module, _inputs: object) -> None:
        on = torch.is_autocast_enabled("cpu")
        seen.append(torch.get_autocast_dtype("cpu") if on else None)

    small_net.register_forward_pre_hook(record)
    assert recalibrate_batch_norm(small_net, halves, config)
    assert seen and set(seen) == {autocast}


def test_extra_item_fields_reach_the_loss(small_net: torch.nn.Module, halves: TensorDataset) -> None:
    images, labels = halves.tensors
    weights = torch.linspace(0.5, 1.5, len(labels))
    seen: list[torch.Tensor] = []

    def weighted(module: torch.nn.Module, batch: torch.Tensor, targets: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        seen.append(w)
        losses = torch.nn.functional.cross_entropy(module(batch), targets, reduction="none")
        return (losses * w).mean()

    train(small_net, TensorDataset(images, labels, weights), FAST, loss_fn=weighted)
    assert len(seen) == 2 * (256 // 16)
    assert sorted(torch.cat(seen).tolist()) == sorted(weights.tolist() * 2)  # every item's field, each epoch
