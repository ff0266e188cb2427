"""Pieces shared by the dataset sources: normalisation, the evaluation transform, splitting, a tensor dataset."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

import torch
from torch.utils.data import Dataset

if TYPE_CHECKING:
    from PIL.Image import Image

#: ImageNet channel means and standard deviations (what torchvision's pretrained weights expect).
IMAGENET_MEAN: Final = (0.485, 0.456, 0.406)
IMAGENET_STD: Final = (0.229, 0.224, 0.225)
#: Share of the samples that go to the validation split when a dataset has no split of its own.
VAL_FRACTION: Final = 0.2


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


def split_indices(labels: Sequence[int], seed: int, val_fraction: float = VAL_FRACTION) -> tuple[list[int], list[int]]:
    """Seeded train/validation split of ``range(len(labels))``, stratified by label when every class allows it.

    Returns:
        ``(train_indices, val_indices)``, each sorted; both non-empty when there are at least two samples.
    """
    from sklearn.model_selection import train_test_split

    indices = list(range(len(labels)))
    counts: dict[int, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    n_val = max(1, round(len(indices) * val_fraction))
    # Stratification needs two samples per class and room for every class on both sides.
    stratify = labels if min(counts.values()) >= 2 and len(counts) <= min(n_val, len(indices) - n_val) else None
    train, val = train_test_split(indices, test_size=n_val, random_state=seed, stratify=stratify)
    return sorted(train), sorted(val)


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
