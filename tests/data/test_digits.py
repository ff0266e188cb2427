"""The embedded digits dataset: the three splits (disjoint, stratified, seeded), shapes, dtypes, normalisation."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sized

import pytest
import torch

from mlperf_track.data.common import IMAGENET_MEAN, IMAGENET_STD, NormalizedGreyDataset, split_three
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
    assert splits.train is not None and splits.val is not None and splits.holdout is not None
    assert _n(splits.train) + _n(splits.holdout) + _n(splits.val) == 1797
    assert _n(splits.val) == round(1797 * 0.2) == 359  # the evaluation split of earlier releases, unchanged
    assert _n(splits.holdout) == 180 and _n(splits.train) == 1258
    assert splits.tags["dataset.holdout_size"] == "180" and splits.tags["dataset.train_size"] == "1258"
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
    parts = split_three(bunch.target.tolist(), seed=0)
    splits = load_dataset("digits", image_size=8)
    for indices, split in zip(parts, (splits.train, splits.holdout, splits.val), strict=True):
        assert isinstance(split, NormalizedGreyDataset)
        expected = torch.as_tensor(bunch.images[indices[5]], dtype=torch.float32) / 16
        torch.testing.assert_close(split.grey[5, 0], expected)
        assert split.labels[5] == bunch.target[indices[5]]


def test_split_is_deterministic_stratified_and_seeded() -> None:
    first, again, other = (load_dataset("digits", image_size=8, seed=seed) for seed in (0, 0, 1))

    assert _labels(first.val) == _labels(again.val)
    assert isinstance(first.val, NormalizedGreyDataset) and isinstance(again.val, NormalizedGreyDataset)
    assert torch.equal(first.val.grey, again.val.grey)
    assert isinstance(other.val, NormalizedGreyDataset)
    assert not torch.equal(first.val.grey, other.val.grey)
    assert _labels(first.holdout) == _labels(again.holdout) and _labels(first.train) == _labels(again.train)
    assert isinstance(first.holdout, NormalizedGreyDataset) and isinstance(other.holdout, NormalizedGreyDataset)
    assert not torch.equal(first.holdout.grey, other.holdout.grey)
    for split in (first.train, first.holdout, first.val):
        counts = Counter(_labels(split))
        assert set(counts) == set(range(10))
        # Stratified: each class's share is the same in every split, within one image per class.
        total = sum(counts.values())
        expected = [total * share for share in _class_shares()]
        assert all(abs(counts[label] - expected[label]) <= 1 for label in range(10))
    assert first.tags["dataset.split_seed"] == "0" and other.tags["dataset.split_seed"] == "1"


def _class_shares() -> list[float]:
    from sklearn.datasets import load_digits

    counts = Counter(load_digits().target.tolist())
    return [counts[label] / 1797 for label in range(10)]


@pytest.mark.parametrize("seed", [0, 3])
def test_split_three_is_disjoint_complete_stratified_and_seeded(seed: int) -> None:
    labels = [index % 4 for index in range(200)] + [4] * 8  # a rare class too
    train, holdout, evaluation = split_three(labels, seed=seed)
    assert sorted(train + holdout + evaluation) == list(range(len(labels)))  # disjoint and complete
    assert (len(train), len(holdout), len(evaluation)) == (145, 21, 42)
    for part in (train, holdout, evaluation):
        assert part == sorted(part) and set(labels[index] for index in part) == set(range(5))
    shares = [Counter(labels[index] for index in part)[0] / len(part) for part in (train, holdout, evaluation)]
    assert max(shares) - min(shares) < 0.05  # class 0 is 24% of every split
    assert split_three(labels, seed=seed) == (train, holdout, evaluation)
    assert split_three(labels, seed=seed + 1) != (train, holdout, evaluation)


def test_split_three_of_tiny_sets() -> None:
    assert [len(part) for part in split_three([0, 1, 0], seed=0)] == [1, 1, 1]
    train, holdout, evaluation = split_three([0, 1], seed=0)  # too few for a holdout
    assert len(evaluation) == 1 and holdout == [] and len(train) == 1


def test_digits_takes_no_argument() -> None:
    with pytest.raises(ConfigError, match="digits:x"):
        load_dataset("digits:x", image_size=8)
