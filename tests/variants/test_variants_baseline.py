"""prepare_baseline: head replacement, training (fixed or to convergence), the on-disk cache, untrained cases."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from mlperf_track import metrics
from mlperf_track.data.base import DatasetSplits
from mlperf_track.engine.accuracy import evaluate_accuracy, module_predictor
from mlperf_track.errors import ConfigError
from mlperf_track.models.base import LoadedModel
from mlperf_track.training.early_stopping import StoppingRule, score_holdout
from mlperf_track.training.loop import TrainConfig
from mlperf_track.variants.baseline import DEFAULT_EPOCHS, cache_key, prepare_baseline
from mlperf_track.variants.common import resolve_train_precision

QUICK_RULE = StoppingRule(patience=2, max_epochs=25, max_seconds=None)

SIZE = 16


def _tiny() -> LoadedModel:
    from mlperf_track.models.registry import load_model

    return load_model("tinycnn")


def _prepare(loaded: LoadedModel, data: DatasetSplits, cache: Path, **changes: object) -> object:
    settings: dict[str, object] = {"image_size": SIZE, "epochs": 1, "device": "cpu", "seed": 0, "cache_dir": cache}
    settings.update(changes)
    return prepare_baseline(loaded, data, **settings)  # type: ignore[arg-type]


def test_fine_tunes_then_loads_from_the_cache(digits_small: DatasetSplits, tmp_path: Path) -> None:
    loaded = _tiny()
    original = {name: value.clone() for name, value in loaded.module.state_dict().items()}
    first = prepare_baseline(loaded, digits_small, image_size=SIZE, epochs=1, device="cpu", seed=0, cache_dir=tmp_path)
    assert not first.cached
    assert first.facts["baseline.trained"] == "true" and first.facts["baseline.cached"] == "false"
    assert float(first.facts["baseline.train_s"]) > 0
    module = first.artifact.module
    assert module is not None and not module.training
    assert digits_small.val is not None
    top1 = evaluate_accuracy(module_predictor(module), digits_small.val).top1
    assert first.facts["baseline.val_top1"] == f"{top1:.4f}"
    assert first.artifact.input_shape == (3, SIZE, SIZE) and first.artifact.num_classes == 10
    assert first.artifact.tags["baseline.cached"] == "false"
    # The loaded model itself is left alone; the artifact is a trained copy.
    assert all(torch.equal(value, loaded.module.state_dict()[name]) for name, value in original.items())
    assert not torch.equal(module.fc.weight, loaded.module.fc.weight)  # type: ignore[union-attr,arg-type]
    assert len(list((tmp_path / "baselines").glob("tinycnn-*.pt"))) == 1

    second = prepare_baseline(
        _tiny(), digits_small, image_size=SIZE, epochs=1, device="cpu", seed=0, cache_dir=tmp_path
    )
    assert second.cached and second.facts["baseline.cached"] == "true"
    assert second.facts["baseline.train_s"] == first.facts["baseline.train_s"]  # the time it took when trained
    assert second.facts["baseline.val_top1"] == first.facts["baseline.val_top1"]
    for name, value in module.state_dict().items():
        assert torch.equal(value, second.artifact.module.state_dict()[name])  # type: ignore[union-attr]


def test_cache_key_covers_what_changes_the_weights(digits_small: DatasetSplits) -> None:
    loaded = _tiny()
    config = TrainConfig(epochs=1, seed=0)

    def key(**changes: object) -> str:
        settings: dict[str, object] = {"image_size": SIZE, "device": "cpu", "config": config, "num_classes": 10}
        settings.update(changes)
        return cache_key(loaded, digits_small, **settings)  # type: ignore[arg-type]

    assert key() == key()
    rule = StoppingRule(patience=2, max_epochs=10, max_seconds=60.0)
    stopping = [
        key(rule=rule),
        key(rule=dataclasses.replace(rule, patience=3)),
        key(rule=dataclasses.replace(rule, max_epochs=11)),
        key(rule=dataclasses.replace(rule, max_seconds=None)),
        key(rule=dataclasses.replace(rule, min_delta=0.01)),
    ]
    assert len({key(), *stopping}) == 1 + len(stopping)  # the stopping rule is part of the key
    others = [
        key(image_size=32),
        key(config=dataclasses.replace(config, seed=1)),
        key(config=dataclasses.replace(config, epochs=2)),
        key(config=dataclasses.replace(config, lr=0.1)),
        key(config=dataclasses.replace(config, precision="bf16")),
        key(num_classes=3),
        key(device="cuda"),
    ]
    assert len({key(), *others}) == 1 + len(others)
    with torch.no_grad():
        loaded.module.fc.weight.add_(1.0)  # type: ignore[union-attr,operator]
    assert key() not in others and key() != cache_key(
        _tiny(), digits_small, image_size=SIZE, device="cpu", config=config, num_classes=10
    )


def test_a_corrupt_cache_file_is_retrained(digits_small: DatasetSplits, tmp_path: Path) -> None:
    prepare_baseline(_tiny(), digits_small, image_size=SIZE, epochs=1, device="cpu", seed=0, cache_dir=tmp_path)
    (cached_file,) = (tmp_path / "baselines").glob("*.pt")
    cached_file.write_bytes(b"not a checkpoint")
    again = prepare_baseline(_tiny(), digits_small, image_size=SIZE, epochs=1, device="cpu", seed=0, cache_dir=tmp_path)
    assert not again.cached and again.facts["baseline.trained"] == "true"


def test_head_is_replaced_for_another_class_count(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    images, labels = torch.randn(40, 3, SIZE, SIZE, generator=generator), torch.arange(40) % 3
    data = DatasetSplits(
        name="three",
        image_size=SIZE,
        num_classes=3,
        train=TensorDataset(images, labels),
        val=TensorDataset(images, labels),
    )
    prepared = prepare_baseline(_tiny(), data, image_size=SIZE, epochs=1, device="cpu", seed=0, cache_dir=tmp_path)
    assert prepared.facts["baseline.head_replaced"] == "true"
    assert prepared.artifact.num_classes == 3
    assert prepared.artifact.module(images[:2]).shape == (2, 3)  # type: ignore[misc]


def test_no_training_without_labels_or_epochs(
    digits_small: DatasetSplits, synthetic_data: DatasetSplits, tmp_path: Path
) -> None:
    loaded = _tiny()
    synthetic = prepare_baseline(
        loaded, synthetic_data, image_size=SIZE, epochs=2, device="cpu", seed=0, cache_dir=tmp_path
    )
    assert synthetic.facts["baseline.trained"] == "false" and not synthetic.cached
    assert "no labelled training split" in synthetic.facts["baseline.not_trained_reason"]
    assert "baseline.val_top1" not in synthetic.facts
    assert torch.equal(synthetic.artifact.module.fc.weight, loaded.module.fc.weight)  # type: ignore[union-attr,arg-type]
    untrained = prepare_baseline(
        loaded, digits_small, image_size=SIZE, epochs=0, device="cpu", seed=0, cache_dir=tmp_path
    )
    assert untrained.facts["baseline.not_trained_reason"] == "epochs=0"
    assert "baseline.val_top1" in untrained.facts  # accuracy of the model as loaded is still measured
    assert not (tmp_path / "baselines").exists()
    for bad in (-1, 1.5, True, "auto"):
        with pytest.raises(ConfigError, match="epochs"):
            prepare_baseline(
                loaded, digits_small, image_size=SIZE, epochs=bad, device="cpu", seed=0, cache_dir=tmp_path
            )  # type: ignore[arg-type]


@pytest.mark.slow
def test_default_fine_tune_makes_resnet18_accurate_on_digits(tmp_path: Path) -> None:
    """Fixed epochs: resnet18 at 32 px from random weights reaches >= 0.8 top-1 on digits in DEFAULT_EPOCHS."""
    from mlperf_track.data.registry import load_dataset
    from mlperf_track.models.registry import load_model

    torch.set_num_threads(2)
    data = load_dataset("digits", image_size=32, seed=0)
    prepared = prepare_baseline(
        load_model("resnet18"), data, image_size=32, epochs=DEFAULT_EPOCHS, device="cpu", seed=0, cache_dir=tmp_path
    )
    assert float(prepared.facts["baseline.val_top1"]) >= 0.8


@pytest.mark.slow
# About 1 min on a quiet 2-core machine (5 epochs); on the shared one, loaded by other jobs, an epoch took ~5 min.
@pytest.mark.timeout(3600)
def test_converged_resnet18_at_64_px_reaches_097_on_digits(tmp_path: Path) -> None:
    """The issue's target with the default settings and rule, minus the time cap (which depends on the machine)."""
    from mlperf_track.data.registry import load_dataset
    from mlperf_track.models.registry import load_model
    from mlperf_track.variants.baseline import DEFAULT_STOPPING

    torch.set_num_threads(2)
    data = load_dataset("digits", image_size=64, seed=0)
    rule = dataclasses.replace(DEFAULT_STOPPING, max_seconds=None)
    precision = resolve_train_precision("auto", "cpu")  # what the pipeline trains in on this machine
    prepared = prepare_baseline(
        load_model("resnet18"),
        data,
        image_size=64,
        epochs=None,
        device="cpu",
        seed=0,
        cache_dir=tmp_path,
        rule=rule,
        train_precision=precision,
    )
    assert prepared.facts["baseline.train_precision"] == precision
    assert prepared.facts["baseline.converged"] == "true"
    assert float(prepared.facts["baseline.val_top1"]) >= 0.97


def test_auto_trains_until_the_holdout_stops_improving(digits_small: DatasetSplits, tmp_path: Path) -> None:
    first = _prepare(_tiny(), digits_small, tmp_path, epochs=None, rule=QUICK_RULE)
    facts = first.facts  # type: ignore[attr-defined]
    assert facts["baseline.epochs"] == "auto" and facts["baseline.trained"] == "true"
    assert facts["baseline.stop_reason"] == "patience" and facts["baseline.converged"] == "true"
    epochs_run, best = int(facts["baseline.epochs_run"]), int(facts["baseline.best_epoch"])
    assert 1 <= best <= epochs_run < QUICK_RULE.max_epochs
    assert "patience 2" in facts["baseline.stopping"]
    curve = json.loads(facts[metrics.BASELINE_CURVE_FACT])
    holdout = curve[metrics.BASELINE_HOLDOUT_TOP1]
    assert [step for step, _ in holdout] == list(range(epochs_run + 1))  # epoch 0: before training
    top1 = [value for _, value in holdout]
    assert max(top1[-QUICK_RULE.patience :]) <= max(top1[: -QUICK_RULE.patience])  # stalled for 'patience' epochs
    assert max(top1) > top1[0]  # it learned
    assert [step for step, _ in curve[metrics.BASELINE_TRAIN_LOSS]] == list(range(1, epochs_run + 1))
    assert len(curve[metrics.BASELINE_HOLDOUT_LOSS]) == epochs_run + 1
    # The kept weights are the best epoch's: the holdout scores what the curve says for that epoch.
    module = first.artifact.module  # type: ignore[attr-defined]
    assert digits_small.holdout is not None
    kept = score_holdout(module, digits_small.holdout, batch_size=64, device="cpu")
    assert kept.top1 == pytest.approx(holdout[best][1], abs=1e-6) == pytest.approx(max(v for _, v in holdout))
    assert facts["baseline.holdout_top1"] == f"{kept.top1:.4f}"
    assert metrics.BASELINE_CURVE_FACT not in first.artifact.tags  # type: ignore[attr-defined]  # not on every case

    again = _prepare(_tiny(), digits_small, tmp_path, epochs=None, rule=QUICK_RULE)
    assert again.cached  # type: ignore[attr-defined]
    for name in ("baseline.epochs_run", "baseline.best_epoch", "baseline.stop_reason", metrics.BASELINE_CURVE_FACT):
        assert again.facts[name] == facts[name]  # type: ignore[attr-defined]
    other_rule = _prepare(
        _tiny(), digits_small, tmp_path, epochs=None, rule=dataclasses.replace(QUICK_RULE, patience=1)
    )
    assert not other_rule.cached  # type: ignore[attr-defined]  # another stopping rule, another cache entry


def test_auto_cuts_a_holdout_when_the_dataset_has_none(digits_small: DatasetSplits, tmp_path: Path) -> None:
    no_holdout = dataclasses.replace(digits_small, holdout=None)
    prepared = _prepare(_tiny(), no_holdout, tmp_path, epochs=None, rule=QUICK_RULE)
    assert prepared.facts["baseline.stop_reason"] in ("patience", "max_epochs")  # type: ignore[attr-defined]
    assert "baseline.not_converged_reason" not in prepared.facts  # type: ignore[attr-defined]


def test_fixed_epochs_keep_their_meaning_and_still_record_the_curve(
    digits_small: DatasetSplits, tmp_path: Path
) -> None:
    prepared = _prepare(_tiny(), digits_small, tmp_path, epochs=2)
    facts = prepared.facts  # type: ignore[attr-defined]
    assert facts["baseline.epochs"] == "2" and facts["baseline.epochs_run"] == "2"
    assert facts["baseline.stop_reason"] == "fixed_epochs"
    assert "baseline.converged" not in facts and "baseline.best_epoch" not in facts
    assert len(json.loads(facts[metrics.BASELINE_CURVE_FACT])[metrics.BASELINE_HOLDOUT_TOP1]) == 3


def test_the_time_cap_is_reported_as_not_converged(digits_small: DatasetSplits, tmp_path: Path) -> None:
    rule = StoppingRule(patience=5, max_epochs=25, max_seconds=1e-9)
    facts = _prepare(_tiny(), digits_small, tmp_path, epochs=None, rule=rule).facts  # type: ignore[attr-defined]
    assert facts["baseline.stop_reason"] == "time_cap" and facts["baseline.converged"] == "false"


def test_the_training_precision_is_logged_and_keys_the_cache(digits_small: DatasetSplits, tmp_path: Path) -> None:
    settings = {"image_size": SIZE, "epochs": 1, "device": "cpu", "seed": 0, "cache_dir": tmp_path}
    fp32 = prepare_baseline(_tiny(), digits_small, **settings)  # type: ignore[arg-type]
    bf16 = prepare_baseline(_tiny(), digits_small, train_precision="bf16", **settings)  # type: ignore[arg-type]
    assert fp32.facts["baseline.train_precision"] == "fp32" and bf16.facts["baseline.train_precision"] == "bf16"
    assert not bf16.cached and fp32.facts["baseline.cache_key"] != bf16.facts["baseline.cache_key"]
    again = prepare_baseline(_tiny(), digits_small, train_precision="bf16", **settings)  # type: ignore[arg-type]
    assert again.cached and again.facts["baseline.train_precision"] == "bf16"


@pytest.mark.parametrize("requested", ["fp32", "bf16", " FP32 "])
def test_an_explicit_training_precision_is_kept(requested: str) -> None:
    assert resolve_train_precision(requested, "cpu") == requested.strip().lower()


def test_auto_trains_in_bf16_exactly_where_the_device_computes_it_natively() -> None:
    from mlperf_track.engine.precision import emulated_reason

    expected = "fp32" if emulated_reason("bf16", "cpu") else "bf16"
    assert resolve_train_precision("auto", "cpu") == expected


def test_an_unknown_training_precision_is_refused() -> None:
    with pytest.raises(ConfigError, match="train_precision"):
        resolve_train_precision("fp16", "cpu")
