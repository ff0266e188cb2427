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


# --- files that are not images are refused before any work --------------------------------------------------


def _two_classes(root: Path) -> None:
    _write_images(root / "cat", 3, 0)
    _write_images(root / "dog", 3, 255)


@pytest.mark.parametrize(
    ("relative", "content"),
    [
        ("cat/notes.txt", b"not an image"),
        ("dog/labels.csv", b"a,b\n"),
        ("dog/renamed.png", b"this is text with an image extension"),
        ("cat/nested/broken.jpg", b"\x00\x01"),
    ],
)
def test_a_file_that_is_not_an_image_is_refused_in_one_line(tmp_path: Path, relative: str, content: bytes) -> None:
    from mlperf_track.data.registry import check_dataset

    _two_classes(tmp_path)
    (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / relative).write_bytes(content)
    for call in (
        lambda: check_dataset(f"imagefolder:{tmp_path}"),
        lambda: load_dataset(f"imagefolder:{tmp_path}", image_size=8),
    ):
        with pytest.raises(ConfigError) as info:
            call()
        message = str(info.value)
        assert "\n" not in message and "--dataset" in message and relative in message
        assert "1 file(s) are not readable images" in message and ".png" in message


def test_hidden_files_and_os_droppings_are_ignored(tmp_path: Path) -> None:
    from mlperf_track.data.registry import check_dataset

    _two_classes(tmp_path)
    (tmp_path / "cat" / ".DS_Store").write_bytes(b"\x00")
    (tmp_path / "dog" / "Thumbs.db").write_bytes(b"\x00")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / "README.txt").write_text("top-level files are not in any class", encoding="utf-8")
    check_dataset(f"imagefolder:{tmp_path}")
    assert load_dataset(f"imagefolder:{tmp_path}", image_size=8).num_classes == 2


def test_a_bad_file_in_the_val_split_is_found(tmp_path: Path) -> None:
    for split in ("train", "val"):
        _two_classes(tmp_path / split)
    (tmp_path / "val" / "dog" / "x.txt").write_text("x", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"val/dog/x\.txt"):
        load_dataset(f"imagefolder:{tmp_path}", image_size=8)


def test_the_cli_refuses_it_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlperf_track.cli import main

    data = tmp_path / "data"
    _two_classes(data)
    (data / "cat" / "notes.txt").write_text("x", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    code = main(["bench", "--model", "tinycnn", "--device", "cpu", "--dataset", f"imagefolder:{data}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "cat/notes.txt" in err
