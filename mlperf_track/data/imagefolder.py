"""``imagefolder:<path>``: a directory of class subfolders, read with torchvision's ``ImageFolder``.

Layouts:

- ``<path>/train/<class>/...`` and ``<path>/val/<class>/...``: those are the splits (same classes required);
- ``<path>/<class>/...``: a seeded, stratified 80/20 train/evaluation split.

Either way :func:`~mlperf_track.data.registry.load_dataset` then sets a seeded, stratified eighth of the
training images aside as the holdout (early stopping), so the flat layout ends up 70/10/20.

Images are converted to RGB, resized and center-cropped to ``S`` (:func:`.common.eval_transform`),
and normalised with the ImageNet mean and std.

A class folder must hold only images: torchvision's ``ImageFolder`` silently skips files with other extensions
and fails in the middle of training on a corrupt or renamed file, so :meth:`ImageFolderSource.check` refuses both
up front (hidden files such as ``.DS_Store`` are ignored).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch.utils.data import Subset

from mlperf_track.data.base import DatasetSource, DatasetSplits
from mlperf_track.data.common import VAL_FRACTION, eval_transform, split_indices
from mlperf_track.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

#: Files in class folders that are never data (hidden files are ignored too).
IGNORED_FILES = frozenset({"Thumbs.db", "desktop.ini"})
#: At most this many image headers are opened by the up-front check (evenly spread over the files).
HEADER_CHECKS = 10_000


def _image_folder(root: Path, image_size: int) -> Any:
    import os

    from torchvision.datasets import ImageFolder
    from torchvision.datasets.folder import IMG_EXTENSIONS

    class VisibleImageFolder(ImageFolder):
        """Hidden folders (``.ipynb_checkpoints``) are not classes, hidden files (``._x.jpg``) not images."""

        def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
            classes = sorted(
                entry.name for entry in os.scandir(directory) if entry.is_dir() and not entry.name.startswith(".")
            )
            if not classes:
                raise FileNotFoundError(f"Couldn't find any class folder in {directory}.")
            return classes, {name: index for index, name in enumerate(classes)}

    def visible_image(path: str) -> bool:
        name = os.path.basename(path)
        return not name.startswith(".") and name.lower().endswith(IMG_EXTENSIONS)

    try:
        return VisibleImageFolder(str(root), transform=eval_transform(image_size), is_valid_file=visible_image)
    except FileNotFoundError as error:
        # torchvision says "Couldn't find any class folder" or "Found no valid file for the classes ...".
        reason = str(error).split(". ")[0].rstrip(".")
        raise DataError(f"imagefolder {root} has no usable images ({reason}): expected <class>/<image> files") from None


def _class_files(root: Path) -> list[Path]:
    """Every file under the class subfolders of ``root`` (both splits in the train/val layout)."""
    bases = [root / "train", root / "val"] if (root / "train").is_dir() and (root / "val").is_dir() else [root]
    files: list[Path] = []
    for base in bases:
        for folder in sorted(entry for entry in base.iterdir() if entry.is_dir() and not entry.name.startswith(".")):
            files.extend(
                path
                for path in sorted(folder.rglob("*"))
                if path.is_file() and not path.name.startswith(".") and path.name not in IGNORED_FILES
            )
    return files


def _not_images(files: list[Path]) -> list[Path]:
    """Files with an extension ``ImageFolder`` skips, or whose header PIL cannot read (a sample of the rest)."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.datasets.folder import IMG_EXTENSIONS

    bad = [path for path in files if not path.name.lower().endswith(IMG_EXTENSIONS)]
    images = [path for path in files if path.name.lower().endswith(IMG_EXTENSIONS)]
    step = max(1, -(-len(images) // HEADER_CHECKS))
    for path in images[::step]:
        try:
            with Image.open(path):  # reads the header only
                pass
        except (UnidentifiedImageError, OSError):
            bad.append(path)
    return bad


def check_image_folder(argument: str) -> None:
    """Refuse a folder whose class subfolders hold files that are not images (before any work starts).

    Raises:
        ConfigError: Some files are not images (the message names one and says how many).
        DataError: The path does not exist or is not a directory.
    """
    from torchvision.datasets.folder import IMG_EXTENSIONS

    root = Path(argument).expanduser()
    if not root.is_dir():
        raise DataError(
            f"invalid --dataset='imagefolder:{argument}': imagefolder {root} does not exist or is not a directory; "
            "allowed is imagefolder:<a folder of class subfolders holding images>"
        )
    bad = _not_images(_class_files(root))
    if bad:
        example = bad[0].relative_to(root).as_posix()
        raise ConfigError(
            "--dataset",
            f"imagefolder:{argument}",
            f"a folder whose class subfolders hold only images ({', '.join(IMG_EXTENSIONS)})",
            hint=f"{len(bad)} file(s) are not readable images, e.g. {example}: move them out of the class folders",
        )


def _check_classes(root: Path, classes: list[str]) -> None:
    if len(classes) < 2:
        raise DataError(
            f"imagefolder {root} has {len(classes)} class folder(s) ({', '.join(classes) or 'none'}); "
            "classification needs at least two"
        )


class ImageFolderSource(DatasetSource):
    """A user's image directory in the ``ImageFolder`` layout."""

    scheme = "imagefolder"

    def check(self, argument: str | None) -> None:
        """The cheap checks :meth:`load` makes first: a path, an existing folder, only image files in it.

        Raises:
            ConfigError: No path was given, or some files are not images.
            DataError: The path is missing or not a directory.
        """
        if not argument:
            raise ConfigError("dataset", "imagefolder:", "imagefolder:<path to a folder of class subfolders>")
        check_image_folder(argument)

    def load(self, argument: str | None, *, image_size: int, seed: int = 0) -> DatasetSplits:
        """Index the folder (images are decoded lazily, per item).

        Raises:
            ConfigError: No path was given, or a class folder holds files that are not images.
            DataError: The path is missing, not a directory, empty, has one class, or its train/ and val/
                folders disagree on the classes.
        """
        self.check(argument)
        assert argument is not None
        root = Path(argument).expanduser()
        if (root / "train").is_dir() and (root / "val").is_dir():
            train: Any = _image_folder(root / "train", image_size)
            val: Any = _image_folder(root / "val", image_size)
            _check_classes(root / "train", train.classes)
            if val.classes != train.classes:
                raise DataError(
                    f"imagefolder {root}: train/ and val/ have different classes "
                    f"({len(train.classes)} vs {len(val.classes)}); they must match"
                )
            classes, layout = list(train.classes), "train/val folders"
        else:
            full = _image_folder(root, image_size)
            _check_classes(root, full.classes)
            if len(full) < 2:
                raise DataError(f"imagefolder {root} has {len(full)} image(s); a split needs at least two")
            train_idx, val_idx = split_indices(list(full.targets), seed=seed, val_fraction=VAL_FRACTION)
            train, val = Subset(full, train_idx), Subset(full, val_idx)
            classes, layout = list(full.classes), f"seeded {1 - VAL_FRACTION:.0%}/{VAL_FRACTION:.0%} split"
        logger.info(
            "imagefolder %s: %d classes, %d train, %d validation (%s)", root, len(classes), len(train), len(val), layout
        )
        return DatasetSplits(
            name=f"{self.scheme}:{argument}",
            image_size=image_size,
            num_classes=len(classes),
            train=train,
            val=val,
            class_names=classes,
            tags={
                "dataset.train_size": str(len(train)),
                "dataset.val_size": str(len(val)),
                "dataset.split": layout,
                "dataset.split_seed": str(seed),
                "dataset.path": str(root.resolve()),
            },
        )
