"""``imagefolder:<path>``: a directory of class subfolders, read with torchvision's ``ImageFolder``.

Layouts:

- ``<path>/train/<class>/...`` and ``<path>/val/<class>/...``: those are the splits (same classes required);
- ``<path>/<class>/...``: a seeded, stratified 80/20 train/evaluation split.

Either way :func:`~mlperf_track.data.registry.load_dataset` then sets a seeded, stratified eighth of the
training images aside as the holdout (early stopping), so the flat layout ends up 70/10/20.

Images are converted to RGB, resized and center-cropped to ``S`` (:func:`.common.eval_transform`),
and normalised with the ImageNet mean and std.
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


def _image_folder(root: Path, image_size: int) -> Any:
    from torchvision.datasets import ImageFolder

    try:
        return ImageFolder(str(root), transform=eval_transform(image_size))
    except FileNotFoundError as error:
        # torchvision says "Couldn't find any class folder" or "Found no valid file for the classes ...".
        reason = str(error).split(". ")[0].rstrip(".")
        raise DataError(f"imagefolder {root} has no usable images ({reason}): expected <class>/<image> files") from None


def _check_classes(root: Path, classes: list[str]) -> None:
    if len(classes) < 2:
        raise DataError(
            f"imagefolder {root} has {len(classes)} class folder(s) ({', '.join(classes) or 'none'}); "
            "classification needs at least two"
        )


class ImageFolderSource(DatasetSource):
    """A user's image directory in the ``ImageFolder`` layout."""

    scheme = "imagefolder"

    def load(self, argument: str | None, *, image_size: int, seed: int = 0) -> DatasetSplits:
        """Index the folder (images are decoded lazily, per item).

        Raises:
            ConfigError: No path was given.
            DataError: The path is missing, not a directory, empty, has one class, or its train/ and val/
                folders disagree on the classes.
        """
        if not argument:
            raise ConfigError("dataset", "imagefolder:", "imagefolder:<path to a folder of class subfolders>")
        root = Path(argument).expanduser()
        if not root.is_dir():
            raise DataError(f"imagefolder {root} does not exist or is not a directory")
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
