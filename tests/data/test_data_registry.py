"""Dataset references: schemes, synthetic data, reference errors, and the holdout cut for every source."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.utils.data import Subset, TensorDataset

from mlperf_track.data.base import DatasetSource, DatasetSplits
from mlperf_track.data.common import dataset_labels, with_holdout
from mlperf_track.data.registry import dataset_schemes, load_dataset, register_dataset_source
from mlperf_track.errors import ConfigError


def test_schemes() -> None:
    assert {"digits", "synthetic", "imagefolder", "torchvision"} <= set(dataset_schemes())


def test_synthetic_has_no_labels() -> None:
    splits = load_dataset("synthetic", image_size=64)

    assert splits.name == "synthetic" and splits.image_size == 64
    assert splits.num_classes is None and splits.train is None and splits.val is None
    assert not splits.has_labels


def test_unknown_scheme_lists_schemes() -> None:
    with pytest.raises(ConfigError, match=r"digits, imagefolder:<path>, synthetic, torchvision:<Name>:<root>") as info:
        load_dataset("cifar:/data", image_size=32)
    assert info.value.parameter == "dataset"
    with pytest.raises(ConfigError, match="did you mean synthetic"):
        load_dataset("synthetc", image_size=32)


@pytest.mark.parametrize("size", [0, -3, 2.5])
def test_bad_image_size(size: object) -> None:
    with pytest.raises(ConfigError, match="image_size"):
        load_dataset("synthetic", image_size=size)  # type: ignore[arg-type]


def test_synthetic_takes_no_argument() -> None:
    with pytest.raises(ConfigError, match="synthetic:x"):
        load_dataset("synthetic:x", image_size=8)


def test_registered_source_receives_argument_with_colons(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlperf_track.data import registry

    monkeypatch.setattr(registry, "_sources", dict(registry._sources))
    seen: list[str | None] = []

    class _Echo(DatasetSource):
        scheme = "echo"

        def load(self, argument: str | None, *, image_size: int, seed: int = 0) -> DatasetSplits:
            seen.append(argument)
            return DatasetSplits(name="echo", image_size=image_size)

    dataset_schemes()
    register_dataset_source(_Echo())
    load_dataset("echo:C:/data:x", image_size=8)
    load_dataset("echo", image_size=8)

    assert seen == ["C:/data:x", None]
    assert "echo" in dataset_schemes()


def _tensor_splits(count: int, holdout: TensorDataset | None = None) -> DatasetSplits:
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(count) % 4
    images = torch.randn(count, 3, 4, 4, generator=generator)
    images[:, 0, 0, 0] = torch.arange(count, dtype=torch.float32)  # each image carries its index
    evaluation = TensorDataset(images[:8], labels[:8])
    return DatasetSplits("tensors", 4, 4, train=TensorDataset(images, labels), val=evaluation, holdout=holdout)


def _indices(dataset: object) -> list[int]:
    return [int(dataset[index][0][0, 0, 0]) for index in range(len(dataset))]  # type: ignore[index,arg-type]


def test_a_source_without_holdout_gets_a_seeded_stratified_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlperf_track.data import registry

    monkeypatch.setattr(registry, "_sources", dict(registry._sources))

    class _Tensors(DatasetSource):
        scheme = "tensors"

        def load(self, argument: str | None, *, image_size: int, seed: int = 0) -> DatasetSplits:
            return _tensor_splits(80)

    dataset_schemes()
    register_dataset_source(_Tensors())
    first, again, other = (load_dataset("tensors", image_size=4, seed=seed) for seed in (0, 0, 1))

    assert first.holdout is not None and first.train is not None
    train, holdout = _indices(first.train), _indices(first.holdout)
    assert len(holdout) == 10 and len(train) == 70 and not set(train) & set(holdout)
    assert sorted(train + holdout) == list(range(80))
    assert sorted(Counter(index % 4 for index in holdout).values()) == [2, 2, 3, 3]  # 20 per class: 2.5 each
    assert _indices(again.holdout) == holdout and _indices(other.holdout) != holdout
    assert "stratified" in first.tags["dataset.holdout_split"] and first.tags["dataset.holdout_size"] == "10"


def test_with_holdout_keeps_a_given_holdout_and_skips_tiny_training_splits() -> None:
    given = TensorDataset(torch.zeros(2, 3, 4, 4), torch.zeros(2, dtype=torch.int64))
    splits = _tensor_splits(12, holdout=given)
    assert with_holdout(splits, seed=0) is splits
    tiny = with_holdout(_tensor_splits(1), seed=0)
    assert tiny.holdout is None and "1 sample" in tiny.tags["dataset.holdout_note"]


def test_dataset_labels_reads_labels_without_decoding_images() -> None:
    splits = _tensor_splits(12)
    assert splits.train is not None
    assert dataset_labels(splits.train) == [index % 4 for index in range(12)]
    assert dataset_labels(Subset(splits.train, [3, 1])) == [3, 1]

    class _Opaque(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
        def __len__(self) -> int:
            return 3

        def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
            raise AssertionError("labels must not be read by decoding images")

    assert dataset_labels(_Opaque()) is None
