"""Pieces shared by the dataset sources: normalisation, the evaluation transform, splitting, a tensor dataset.

Splits: a dataset without splits of its own is cut, seeded and stratified, into train / holdout / evaluation
as 70% / 10% / 20%. The evaluation split (``DatasetSplits.val``) is cut first with the same call as before
the holdout existed, so it holds the same images as in earlier releases and stays comparable; the holdout is
then :data:`HOLDOUT_FRACTION` (1/8) of the rest. Why these sizes, for ``digits`` (1,797 images): the
evaluation split decides how fine an accuracy delta can be resolved (one image is 0.28 points of 359), so
it keeps its 20%; early stopping only needs to see when the holdout accuracy stops rising, for which 180
images suffice when ties are broken by the holdout loss; and training keeps 70% (1,258 images, an eighth
fewer than the 80% it had before the holdout existed). A dataset that comes with its own train and
evaluation splits (torchvision, ``imagefolder`` with ``train/`` and ``val/``) keeps them and gives the
same 1/8 of its training split to the holdout.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

import torch
from torch.utils.data import Dataset, Subset, TensorDataset

if TYPE_CHECKING:
    from PIL.Image import Image

    from mlperf_track.data.base import DatasetSplits

logger = logging.getLogger(__name__)

#: ImageNet channel means and standard deviations (what torchvision's pretrained weights expect).
IMAGENET_MEAN: Final = (0.485, 0.456, 0.406)
IMAGENET_STD: Final = (0.229, 0.224, 0.225)
#: Share of all samples that go to the evaluation split (``DatasetSplits.val``) when a dataset has no split.
VAL_FRACTION: Final = 0.2
#: Share of the training split set aside as the holdout (1/8 of 80% = 10% of all samples).
HOLDOUT_FRACTION: Final = 0.125


def to_rgb(image: Image) -> Image:
    """Convert a PIL image to RGB (greyscale datasets such as MNIST become three equal channels).

    A module-level function rather than a lambda, so that DataLoader workers can pickle the transform.
    """
    return image if image.mode == "RGB" else image.convert("RGB")


def eval_transform(image_size: int) -> object:
    """The ImageNet evaluation transform at ``image_size``: RGB, resize, center crop, to tensor, normalise.

    The shorter side is resized to ``image_size / 0.875`` (256 for 224), as torchvision's weights expect.
    """
    from torchvision import transforms

    return transforms.Compose(
        [
            transforms.Lambda(to_rgb),
            transforms.Resize(round(image_size / 0.875), antialias=True),
            transforms.CenterCrop(image_size),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def split_indices(
    labels: Sequence[int] | None, seed: int, val_fraction: float = VAL_FRACTION, *, size: int | None = None
) -> tuple[list[int], list[int]]:
    """Seeded two-way split of ``range(len(labels))``, stratified by label when every class allows it.

    Args:
        labels: The label of each sample, or ``None`` when unknown (then ``size`` gives the count and the
            split is not stratified).
        seed: Seed of the split.
        val_fraction: Share of the samples in the second part.
        size: Number of samples when ``labels`` is ``None``.

    Returns:
        ``(first_indices, second_indices)``, each sorted; both non-empty when there are at least two samples.
    """
    from sklearn.model_selection import train_test_split

    count = len(labels) if labels is not None else int(size or 0)
    indices = list(range(count))
    n_val = min(max(1, round(count * val_fraction)), max(count - 1, 1))
    stratify = labels if labels is not None and _can_stratify(labels, n_val) else None
    train, val = train_test_split(indices, test_size=n_val, random_state=seed, stratify=stratify)
    return sorted(train), sorted(val)


def _can_stratify(labels: Sequence[int], n_val: int) -> bool:
    """Stratification needs two samples per class and room for every class on both sides."""
    counts: dict[int, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    return bool(counts) and min(counts.values()) >= 2 and len(counts) <= min(n_val, len(labels) - n_val)


def split_three(
    labels: Sequence[int], seed: int, *, val_fraction: float = VAL_FRACTION, holdout_fraction: float = HOLDOUT_FRACTION
) -> tuple[list[int], list[int], list[int]]:
    """Seeded, stratified train / holdout / evaluation split of ``range(len(labels))`` (disjoint, sorted).

    The evaluation part is cut first (exactly as :func:`split_indices` cuts it), then ``holdout_fraction`` of
    the rest becomes the holdout. The holdout is empty when fewer than two samples are left for training.
    """
    rest, evaluation = split_indices(labels, seed, val_fraction)
    if len(rest) < 2:
        return rest, [], evaluation
    train, holdout = split_indices([labels[index] for index in rest], seed, holdout_fraction)
    return [rest[index] for index in train], [rest[index] for index in holdout], evaluation


def dataset_labels(dataset: Dataset) -> list[int] | None:
    """Every label of ``dataset`` without decoding its images, or ``None`` when they cannot be read cheaply.

    Knows :class:`NormalizedGreyDataset`, ``TensorDataset`` (labels second), ``Subset`` of any of these, and
    datasets with a ``targets``/``labels``/``_labels`` list (``ImageFolder`` and most torchvision datasets).
    """
    if isinstance(dataset, Subset):
        inner = dataset_labels(dataset.dataset)
        return None if inner is None else [inner[int(index)] for index in dataset.indices]
    if isinstance(dataset, NormalizedGreyDataset):
        return [int(label) for label in dataset.labels.tolist()]
    if isinstance(dataset, TensorDataset) and len(dataset.tensors) >= 2:
        return [int(label) for label in dataset.tensors[1].reshape(-1).tolist()]
    for attribute in ("targets", "labels", "_labels"):
        values = getattr(dataset, attribute, None)
        if values is not None and len(values) == len(dataset):  # type: ignore[arg-type]
            try:
                return [int(label) for label in values]
            except (TypeError, ValueError):
                return None
    return None


def with_holdout(splits: DatasetSplits, seed: int, fraction: float = HOLDOUT_FRACTION) -> DatasetSplits:
    """``splits`` with a holdout cut from its training split (seeded; stratified when the labels are known).

    Returns ``splits`` itself when it already has a holdout, has no training split, or the training split is
    too small to give one (fewer than two samples; a tag says so).
    """
    train = splits.train
    if splits.holdout is not None or train is None:
        return splits
    size = len(train)  # type: ignore[arg-type]
    if size < 2:
        note = f"no holdout: the training split has {size} sample(s)"
        return dataclasses.replace(splits, tags={**splits.tags, "dataset.holdout_note": note})
    labels = dataset_labels(train)
    kept, holdout = split_indices(labels, seed, fraction, size=size)
    logger.info("%s: %d of %d training samples set aside as the holdout", splits.name, len(holdout), size)
    tags = {
        **splits.tags,
        "dataset.train_size": str(len(kept)),
        "dataset.holdout_size": str(len(holdout)),
        "dataset.holdout_split": f"seeded {fraction:.1%} of the training split"
        + (", stratified" if labels is not None and _can_stratify(labels, len(holdout)) else ", not stratified"),
        "dataset.split_seed": str(seed),
    }
    return dataclasses.replace(splits, train=Subset(train, kept), holdout=Subset(train, holdout), tags=tags)


class NormalizedGreyDataset(Dataset[tuple[torch.Tensor, int]]):
    """Precomputed single-channel images in ``[0, 1]``, served as normalised 3-channel images.

    Only the grey plane is stored (a third of the memory of RGB); each item is expanded to three channels and
    normalised with the ImageNet mean and std on access, which costs microseconds.

    Args:
        grey: Float tensor ``(N, 1, S, S)`` with values in ``[0, 1]``.
        labels: Int64 tensor ``(N,)``.
    """

    def __init__(self, grey: torch.Tensor, labels: torch.Tensor) -> None:
        if grey.dim() != 4 or grey.shape[1] != 1 or grey.shape[0] != labels.shape[0]:
            raise ValueError(f"expected grey (N, 1, S, S) and labels (N,), got {tuple(grey.shape)}, {labels.shape}")
        self.grey = grey
        self.labels = labels
        self._mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return int(self.grey.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = (self.grey[index].expand(3, -1, -1) - self._mean) / self._std
        return image, int(self.labels[index])

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All images ``(N, 3, S, S)`` (normalised) and labels ``(N,)`` at once, for whole-split evaluation."""
        return (self.grey.expand(-1, 3, -1, -1) - self._mean) / self._std, self.labels
