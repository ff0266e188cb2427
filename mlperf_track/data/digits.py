"""``digits``: scikit-learn's embedded 8x8 handwritten digits (1,797 images, 10 classes), offline.

The images ship inside scikit-learn, so the full pipeline (fine-tuning, calibration, accuracy) runs without
any download. Each 8x8 grey image (values 0..16) is scaled to ``[0, 1]``, upsampled bilinearly to ``S x S``,
repeated to three channels and normalised with the ImageNet mean and std. The split is a fixed, stratified
80/20 train/validation split determined by ``seed``.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F  # noqa: N812 - the conventional alias

from mlperf_track.data.base import DatasetSource, DatasetSplits
from mlperf_track.data.common import VAL_FRACTION, NormalizedGreyDataset, split_indices
from mlperf_track.errors import ConfigError

logger = logging.getLogger(__name__)

_MAX_PIXEL = 16.0


def _upsample(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """``(N, 8, 8)`` in 0..16 -> ``(N, 1, S, S)`` in [0, 1]; bilinear interpolation keeps values in range."""
    grey = (images / _MAX_PIXEL).unsqueeze(1)
    if grey.shape[-1] == image_size:
        return grey.contiguous()
    return F.interpolate(grey, size=(image_size, image_size), mode="bilinear", align_corners=False).clamp_(0.0, 1.0)


class DigitsSource(DatasetSource):
    """scikit-learn's ``load_digits`` as a labelled image-classification dataset."""

    scheme = "digits"

    def load(self, argument: str | None, *, image_size: int, seed: int = 0) -> DatasetSplits:
        """Build both splits at ``image_size`` (tensors are computed once, here).

        Raises:
            ConfigError: An argument was given (``digits`` takes none).
        """
        if argument:
            raise ConfigError("dataset", f"digits:{argument}", "digits (it takes no argument)")
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = torch.as_tensor(bunch.images, dtype=torch.float32)
        labels = torch.as_tensor(bunch.target, dtype=torch.int64)
        train_idx, val_idx = split_indices(labels.tolist(), seed=seed, val_fraction=VAL_FRACTION)
        train_t, val_t = torch.tensor(train_idx), torch.tensor(val_idx)
        # Split the 8x8 images before upsampling, so that no full-size copy of the whole set is ever made.
        train = NormalizedGreyDataset(_upsample(images[train_t], image_size), labels[train_t])
        val = NormalizedGreyDataset(_upsample(images[val_t], image_size), labels[val_t])
        logger.info("digits at %dpx: %d train, %d validation images", image_size, len(train), len(val))
        return DatasetSplits(
            name=self.scheme,
            image_size=image_size,
            num_classes=10,
            train=train,
            val=val,
            class_names=[str(digit) for digit in range(10)],
            tags={
                "dataset.train_size": str(len(train)),
                "dataset.val_size": str(len(val)),
                "dataset.split_seed": str(seed),
                "dataset.source": "sklearn.datasets.load_digits",
            },
        )
