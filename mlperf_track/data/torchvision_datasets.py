"""``torchvision:<Name>:<root>``: a ``torchvision.datasets`` class whose files are already on disk.

Nothing is downloaded (``download=False`` always). The train and evaluation splits are the dataset's own:
the ``train=True/False`` flag (CIFAR10, CIFAR100, MNIST, FashionMNIST, ...) or the ``split`` argument, tried as
``train``/``val``, ``train``/``test`` and ``trainval``/``test`` (SVHN, Flowers102, Food101, OxfordIIITPet, ...).
The holdout (early stopping) is a seeded, stratified share of the training split, cut by
:func:`mlperf_track.data.registry.load_dataset`.
Images go through the same evaluation transform as ImageFolder (RGB, resize, center crop, normalise).
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any

from mlperf_track.data.base import DatasetSource, DatasetSplits
from mlperf_track.data.common import eval_transform
from mlperf_track.errors import ConfigError, DataError
from mlperf_track.spec import closest_matches

logger = logging.getLogger(__name__)

_SPLIT_PAIRS = (("train", "val"), ("train", "test"), ("trainval", "test"))
_ALLOWED = "torchvision:<Name>:<root>, e.g. torchvision:CIFAR10:/data/cifar"


def _splittable(cls: object) -> bool:
    try:
        parameters = inspect.signature(cls.__init__).parameters  # type: ignore[misc]
    except (TypeError, ValueError):
        return False
    return "root" in parameters and ("train" in parameters or "split" in parameters)


def _dataset_class(name: str) -> Any:
    import torchvision.datasets

    classes = {item: getattr(torchvision.datasets, item) for item in torchvision.datasets.__all__}
    names = sorted(item for item, cls in classes.items() if inspect.isclass(cls) and _splittable(cls))
    if name not in names:
        matches = closest_matches(name, names)
        hint = f"did you mean {', '.join(matches)}?" if matches else None
        raise ConfigError("dataset", name, "a torchvision.datasets class with a train flag or split argument", hint)
    return classes[name]


def _not_on_disk(name: str, root: Path, error: BaseException) -> DataError:
    # torchvision's own message suggests download=True, which this tool never does: keep only its first sentence.
    reason = str(error).split(". ")[0].rstrip(".")
    return DataError(
        f"torchvision dataset {name} must already be on disk under {root} (nothing is downloaded): {reason}"
    )


def _build_splits(cls: Any, name: str, root: Path, image_size: int) -> tuple[Any, Any, str]:
    parameters = inspect.signature(cls.__init__).parameters
    transform = eval_transform(image_size)
    common = {"root": str(root), "transform": transform}
    if "download" in parameters:
        common["download"] = False
    try:
        if "train" in parameters:
            return cls(train=True, **common), cls(train=False, **common), "train=True/False"
        if "split" not in parameters:
            raise DataError(f"torchvision dataset {name} has neither a train flag nor a split argument")
        last_error: BaseException | None = None
        for train_split, val_split in _SPLIT_PAIRS:
            try:
                train = cls(split=train_split, **common)
                val = cls(split=val_split, **common)
            except ValueError as error:  # the dataset does not know this split name
                last_error = error
                continue
            return train, val, f"split={train_split}/{val_split}"
        raise DataError(f"torchvision dataset {name}: none of the splits {_SPLIT_PAIRS} exist ({last_error})")
    except (RuntimeError, FileNotFoundError, OSError) as error:
        raise _not_on_disk(name, root, error) from None
    except TypeError as error:  # e.g. EMNIST needs a split besides the train flag
        raise DataError(f"torchvision dataset {name} needs arguments a reference cannot give: {error}") from None


def _class_names(dataset: Any) -> list[str]:
    classes = getattr(dataset, "classes", None)
    return [str(item) for item in classes] if classes else []


def _num_classes(dataset: Any, names: list[str]) -> int:
    if names:
        return len(names)
    targets = getattr(dataset, "targets", None)
    if targets is None:
        targets = getattr(dataset, "labels", None)
    if targets is None:
        raise DataError(f"cannot tell the number of classes of {type(dataset).__name__} (no classes or targets)")
    return int(max(int(label) for label in targets)) + 1


class TorchvisionDatasetSource(DatasetSource):
    """A torchvision dataset class over files already on disk."""

    scheme = "torchvision"

    def load(self, argument: str | None, *, image_size: int, seed: int = 0) -> DatasetSplits:
        """Open the dataset's train and evaluation splits (fixed; ``seed`` only seeds the holdout cut later).

        Raises:
            ConfigError: Malformed reference or unknown dataset class (with close matches).
            DataError: The root or the dataset's files are missing.
        """
        name, _, root_text = (argument or "").partition(":")
        if not name or not root_text:
            raise ConfigError("dataset", f"torchvision:{argument or ''}", _ALLOWED)
        cls = _dataset_class(name)
        root = Path(root_text).expanduser()
        if not root.is_dir():
            raise DataError(f"torchvision dataset root {root} does not exist; {name} must already be on disk there")
        train, val, layout = _build_splits(cls, name, root, image_size)
        if len(train) == 0 or len(val) == 0:
            raise DataError(f"torchvision dataset {name} under {root} has an empty split ({layout})")
        classes = _class_names(train)
        logger.info("torchvision %s: %d train, %d evaluation (%s)", name, len(train), len(val), layout)
        return DatasetSplits(
            name=f"{self.scheme}:{argument}",
            image_size=image_size,
            num_classes=_num_classes(train, classes),
            train=train,
            val=val,
            class_names=classes,
            tags={
                "dataset.train_size": str(len(train)),
                "dataset.val_size": str(len(val)),
                "dataset.split": layout,
                "dataset.path": str(root.resolve()),
            },
        )
