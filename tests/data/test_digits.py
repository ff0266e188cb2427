"""The embedded digits dataset: split determinism and stratification, shapes, dtypes, normalisation."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sized

import pytest
import torch

from mlperf_track.data.common import IMAGENET_MEAN, IMAGENET_STD, NormalizedGreyDataset, split_indices
from mlperf_track.data.registry import load_dataset
from mlperf_track.errors import ConfigError

MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


def _n(dataset: object) -> int:
    assert isinstance(dataset, Sized)
    return len(dataset)


def _labels(dataset: object) -> list[int]:
    assert isinstance(dataset, NormalizedGreyDataset)
    return dataset.labels.tolist()


@pytest.mark.parametrize("size", [8, 20])
def test_shapes_dtypes_and_normalisation(size: int) -> None:
    splits = load_dataset("digits", image_size=size)

    assert splits.num_classes == 10 and splits.has_labels and splits.class_names[3] == "3"
    assert splits.train is not None and splits.val is not None
    assert _n(splits.train) + _n(splits.val) == 1797
    assert _n(splits.val) == round(1797 * 0.2)
    image, label = splits.val[0]
    assert image.shape == (3, size, size) and image.dtype == torch.float32
    assert isinstance(label, int) and 0 <= label < 10
    assert isinstance(splits.val, NormalizedGreyDataset)
    images, labels = splits.val.tensors()
    assert images.shape == (_n(splits.val), 3, size, size) and labels.dtype == torch.int64
    raw = images * STD + MEAN  # undo the normalisation: back to grey values in [0, 1]
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5 and raw.max() > 0.99
    torch.testing.assert_close(raw[:, 0], raw[:, 1])
    torch.testing.assert_close(raw[:, 1], raw[:, 2])
    torch.testing.assert_close(images[0], image)


def test_native_size_matches_sklearn_pixels() -> None:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    train_indices, _ = split_indices(bunch.target.tolist(), seed=0)
    splits = load_dataset("digits", image_size=8)
    assert isinstance(splits.train, NormalizedGreyDataset)
    expected = torch.as_tensor(bunch.images[train_indices[5]], dtype=torch.float32) / 16
    torch.testing.assert_close(splits.train.grey[5, 0], expected)
    assert splits.train.labels[5] == bunch.target[train_indices[5]]


def test_split_is_deterministic_stratified_and_seeded() -> None:
    first, again, other = (load_dataset("digits", image_size=8, seed=seed) for seed in (0, 0, 1))

    assert _labels(first.val) == _labels(again.val)
    assert isinstance(first.val, NormalizedGreyDataset) and isinstance(again.val, NormalizedGreyDataset)
    assert torch.equal(first.val.grey, again.val.grey)
    assert isinstance(other.val, NormalizedGreyDataset)
    assert not torch.equal(first.val.grey, other.val.grey)
    counts = Counter(_labels(first.val))
    assert set(counts) == set(range(10)) and max(counts.values()) - min(counts.values()) <= 2
    assert first.tags["dataset.split_seed"] == "0" and other.tags["dataset.split_seed"] == "1"


def test_digits_takes_no_argument() -> None:
    with pytest.raises(ConfigError, match="digits:x"):
        load_dataset("digits:x", image_size=8)
