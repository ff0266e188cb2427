"""``imagefolder:<path>``: both layouts, the transform, and every error."""

from __future__ import annotations

from collections.abc import Sized
from pathlib import Path

import pytest
import torch
from PIL import Image

from mlperf_track.data.common import IMAGENET_MEAN, IMAGENET_STD
from mlperf_track.data.registry import load_dataset
from mlperf_track.errors import ConfigError, DataError


def _n(dataset: object) -> int:
    assert isinstance(dataset, Sized)
    return len(dataset)


def _write_images(folder: Path, count: int, value: int, mode: str = "RGB") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        Image.new(mode, (20, 14), color=value if mode == "L" else (value, value, value)).save(folder / f"{index}.png")


def test_flat_layout_seeded_stratified_split(tmp_path: Path) -> None:
    _write_images(tmp_path / "cat", 5, 0)
    _write_images(tmp_path / "dog", 5, 255, mode="L")

    splits = load_dataset(f"imagefolder:{tmp_path}", image_size=12, seed=0)
    again = load_dataset(f"imagefolder:{tmp_path}", image_size=12, seed=0)

    assert splits.num_classes == 2 and splits.class_names == ["cat", "dog"]
    assert splits.train is not None and splits.val is not None
    assert splits.holdout is not None  # the 8 left after the evaluation split give 1 to the holdout
    assert _n(splits.train) == 7 and _n(splits.holdout) == 1 and _n(splits.val) == 2
    val_labels = [splits.val[index][1] for index in range(2)]
    assert sorted(val_labels) == [0, 1]  # stratified: one of each
    assert again.val is not None and val_labels == [again.val[index][1] for index in range(2)]
    assert splits.tags["dataset.split"].startswith("seeded 80%/20%")
    image, label = splits.val[0]
    assert image.shape == (3, 12, 12) and image.dtype == torch.float32
    grey = 1.0 if label == 1 else 0.0
    expected = (torch.full((3,), grey) - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(image.mean(dim=(1, 2)), expected, atol=1e-3, rtol=0)


def test_train_val_layout(tmp_path: Path) -> None:
    for split, count in (("train", 3), ("val", 2)):
        _write_images(tmp_path / split / "a", count, 10)
        _write_images(tmp_path / split / "b", count, 200)

    splits = load_dataset(f"imagefolder:{tmp_path}", image_size=16)

    assert splits.train is not None and splits.val is not None
    assert splits.holdout is not None  # cut from train/: 6 = 5 + 1
    assert _n(splits.train) == 5 and _n(splits.holdout) == 1 and _n(splits.val) == 4
    assert splits.tags["dataset.split"] == "train/val folders"
    assert splits.val[0][0].shape == (3, 16, 16)


def test_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "absent"
    with pytest.raises(DataError, match=f"imagefolder {missing} does not exist"):
        load_dataset(f"imagefolder:{missing}", image_size=8)


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"imagefolder {tmp_path} has no usable images"):
        load_dataset(f"imagefolder:{tmp_path}", image_size=8)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with pytest.raises(DataError, match="no usable images"):
        load_dataset(f"imagefolder:{tmp_path}", image_size=8)


def test_one_class(tmp_path: Path) -> None:
    _write_images(tmp_path / "only", 4, 0)

    with pytest.raises(DataError, match=r"1 class folder\(s\) \(only\).*at least two"):
        load_dataset(f"imagefolder:{tmp_path}", image_size=8)


def test_train_val_with_different_classes(tmp_path: Path) -> None:
    _write_images(tmp_path / "train" / "a", 1, 0)
    _write_images(tmp_path / "train" / "b", 1, 0)
    _write_images(tmp_path / "val" / "a", 1, 0)
    _write_images(tmp_path / "val" / "c", 1, 0)

    with pytest.raises(DataError, match="different classes"):
        load_dataset(f"imagefolder:{tmp_path}", image_size=8)


def test_missing_argument() -> None:
    with pytest.raises(ConfigError, match="imagefolder:<path"):
        load_dataset("imagefolder", image_size=8)


def test_message_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_dataset(f"imagefolder:{tmp_path}", image_size=8)
    assert "\n" not in str(info.value)
