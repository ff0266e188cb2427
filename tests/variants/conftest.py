"""Tiny fixtures for the variant tests: tinycnn fine-tuned briefly on a digits subset at 16 px."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from torch.utils.data import Subset

from mlperf_track.data.base import DatasetSplits
from mlperf_track.models.artifact import ModelArtifact
from mlperf_track.variants.base import VariantContext

IMAGE_SIZE = 16
TRAIN_SAMPLES = 192
HOLDOUT_SAMPLES = 64
VAL_SAMPLES = 96


@pytest.fixture(scope="session")
def digits_small() -> DatasetSplits:
    """The real digits dataset at 16 px, cut to 192 training, 64 holdout and 96 evaluation images."""
    from mlperf_track.data.registry import load_dataset

    full = load_dataset("digits", image_size=IMAGE_SIZE, seed=0)
    assert full.train is not None and full.val is not None and full.holdout is not None
    return DatasetSplits(
        name="digits",
        image_size=IMAGE_SIZE,
        num_classes=full.num_classes,
        train=Subset(full.train, range(TRAIN_SAMPLES)),
        val=Subset(full.val, range(VAL_SAMPLES)),
        holdout=Subset(full.holdout, range(HOLDOUT_SAMPLES)),
        class_names=full.class_names,
    )


@pytest.fixture(scope="session")
def synthetic_data() -> DatasetSplits:
    """A dataset without labels, like ``synthetic``."""
    return DatasetSplits(name="synthetic", image_size=IMAGE_SIZE)


@pytest.fixture(scope="session")
def tiny_baseline(digits_small: DatasetSplits, tmp_path_factory: pytest.TempPathFactory) -> ModelArtifact:
    """tinycnn fine-tuned for one epoch on the digits subset (a real, if weak, classifier)."""
    from mlperf_track.models.registry import load_model
    from mlperf_track.variants.baseline import prepare_baseline

    prepared = prepare_baseline(
        load_model("tinycnn"),
        digits_small,
        image_size=IMAGE_SIZE,
        epochs=1,
        device="cpu",
        seed=0,
        cache_dir=tmp_path_factory.mktemp("cache"),
    )
    return prepared.artifact


@pytest.fixture
def make_context(digits_small: DatasetSplits, tmp_path: Path) -> Callable[..., VariantContext]:
    """``make_context(**options)``: a CPU context over the digits subset with the given options."""

    def make(data: DatasetSplits | None = None, epochs: int | None = 1, **options: str) -> VariantContext:
        return VariantContext(
            device="cpu",
            data=data or digits_small,
            image_size=IMAGE_SIZE,
            seed=0,
            epochs=epochs,
            options=options,
            work_dir=tmp_path / "work",
        )

    return make


@pytest.fixture(scope="session")
def built_variants(
    tiny_baseline: ModelArtifact, digits_small: DatasetSplits, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], ModelArtifact]]:
    """``build(name)``: each variant of the tiny baseline, built once per session with default options."""
    from mlperf_track.variants.registry import get_variant

    cache: dict[str, ModelArtifact] = {}
    work = tmp_path_factory.mktemp("variants")

    def build(name: str) -> ModelArtifact:
        if name not in cache:
            options = {"student": "tinycnn"} if "distilled" in name else {}
            context = VariantContext(
                device="cpu", data=digits_small, image_size=IMAGE_SIZE, options=options, work_dir=work / name
            )
            assert tiny_baseline.module is not None
            before = copy.deepcopy(tiny_baseline.module.state_dict())
            tags_before = dict(tiny_baseline.tags)
            torch.manual_seed(0)
            cache[name] = get_variant(name).build(tiny_baseline, context)
            after = tiny_baseline.module.state_dict()
            # Every recipe must leave the baseline exactly as it was (the contract of Variant.build).
            assert before.keys() == after.keys(), f"{name} changed the baseline's layers"
            for key, value in before.items():
                assert torch.equal(value, after[key]), f"{name} modified the baseline's {key}"
            assert tiny_baseline.tags == tags_before, f"{name} modified the baseline's tags"
            assert tiny_baseline.module.training is False
        return cache[name]

    yield build


Predict = Callable[[torch.Tensor], torch.Tensor]


@pytest.fixture(scope="session")
def onnx_predict() -> Callable[[Path], Predict]:
    """``onnx_predict(path)``: an ONNX file run by onnxruntime's CPU provider, as a predict function."""
    return _onnx_predict


def _onnx_predict(path: Path) -> Predict:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def predict(images: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {name: images.numpy()})[0])

    return predict
