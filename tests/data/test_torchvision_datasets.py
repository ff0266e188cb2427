"""``torchvision:<Name>:<root>`` over tiny fake datasets written on disk (nothing is downloaded)."""

from __future__ import annotations

import pickle
import struct
from collections.abc import Sized
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from mlperf_track.data.registry import load_dataset
from mlperf_track.errors import ConfigError, DataError


def _n(dataset: object) -> int:
    assert isinstance(dataset, Sized)
    return len(dataset)


def _write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", dim) for dim in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fake_mnist(tmp_path: Path) -> Path:
    """MNIST's raw idx files (the format torchvision reads; it checks only that they exist)."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, count in (("train", 12), ("t10k", 5)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (count, 28, 28)), 0x803)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(count) % 10, 0x801)
    return tmp_path


@pytest.fixture
def fake_cifar10(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """CIFAR10's python-pickle batches; its md5 check is bypassed, since fake files cannot match it."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    names = [f"data_batch_{index}" for index in range(1, 6)] + ["test_batch"]
    for name in names:
        batch = {"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), "labels": [0, 9]}
        (folder / name).write_bytes(pickle.dumps(batch))
    meta = {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: Path(path).is_file())
    return tmp_path


def test_mnist_grey_becomes_normalised_rgb(fake_mnist: Path) -> None:
    splits = load_dataset(f"torchvision:MNIST:{fake_mnist}", image_size=16)

    assert splits.num_classes == 10 and splits.class_names[0].startswith("0")
    assert splits.train is not None and splits.val is not None
    assert splits.holdout is not None  # cut from the training split: 12 = 10 + 2
    assert _n(splits.train) == 10 and _n(splits.holdout) == 2 and _n(splits.val) == 5
    assert splits.tags["dataset.split"] == "train=True/False" and splits.tags["dataset.holdout_size"] == "2"
    image, label = splits.val[3]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32 and label == 3
    assert not torch.allclose(image[0], image[1])  # per-channel normalisation of three equal grey channels


def test_cifar10_pickle_batches(fake_cifar10: Path) -> None:
    splits = load_dataset(f"torchvision:CIFAR10:{fake_cifar10}", image_size=24)

    assert splits.class_names[9] == "truck" and splits.num_classes == 10
    assert splits.train is not None and splits.val is not None
    assert splits.holdout is not None
    assert _n(splits.train) == 9 and _n(splits.holdout) == 1 and _n(splits.val) == 2
    image, label = splits.val[1]
    assert image.shape == (3, 24, 24) and label == 9


def test_missing_dataset_must_be_on_disk(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"CIFAR10 must already be on disk .*nothing is downloaded") as info:
        load_dataset(f"torchvision:CIFAR10:{tmp_path}", image_size=8)
    assert "download=True" not in str(info.value)


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist; MNIST must already be on disk"):
        load_dataset(f"torchvision:MNIST:{tmp_path / 'absent'}", image_size=8)


def test_unknown_class_suggests(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="did you mean CIFAR10"):
        load_dataset(f"torchvision:CIFAR11:{tmp_path}", image_size=8)


@pytest.mark.parametrize("ref", ["torchvision", "torchvision:CIFAR10", "torchvision::/data"])
def test_malformed_reference(ref: str) -> None:
    with pytest.raises(ConfigError, match="torchvision:<Name>:<root>"):
        load_dataset(ref, image_size=8)
