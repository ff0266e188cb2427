"""``digits``: scikit-learn's embedded 8x8 handwritten digits (1,797 images, 10 classes), offline.

The images ship inside scikit-learn, so the full pipeline (fine-tuning, calibration, accuracy) runs without
any download. Each 8x8 grey image (values 0..16) is scaled to ``[0, 1]``, upsampled bilinearly to ``S x S``,
repeated to three channels and normalised with the ImageNet mean and std. The splits are a fixed, stratified
70/10/20 train / holdout / evaluation split determined by ``seed`` (1,258 / 180 / 359 images; why these
sizes: :mod:`mlperf_track.data.common`).
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F  # noqa: N812 - the conventional alias

from mlperf_track.data.base import DatasetSource, DatasetSplits
from mlperf_track.data.common import NormalizedGreyDataset, split_three
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
        """Build the three splits at ``image_size`` (tensors are computed once, here).

        Raises:
            ConfigError: An argument was given (``digits`` takes none).
        """
        if argument:
            raise ConfigError("dataset", f"digits:{argument}", "digits (it takes no argument)")
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = torch.as_tensor(bunch.images, dtype=torch.float32)
        labels = torch.as_tensor(bunch.target, dtype=torch.int64)
        train, holdout, val = (
            # Split the 8x8 images before upsampling, so that no full-size copy of the whole set is ever made.
            NormalizedGreyDataset(_upsample(images[torch.tensor(part)], image_size), labels[torch.tensor(part)])
            for part in split_three(labels.tolist(), seed=seed)
        )
        logger.info(
            "digits at %dpx: %d train, %d holdout, %d evaluation images", image_size, len(train), len(holdout), len(val)
        )
        return DatasetSplits(
            name=self.scheme,
            image_size=image_size,
            num_classes=10,
            train=train,
            val=val,
            holdout=holdout,
            class_names=[str(digit) for digit in range(10)],
            tags={
                "dataset.train_size": str(len(train)),
                "dataset.holdout_size": str(len(holdout)),
                "dataset.val_size": str(len(val)),
                "dataset.split": "seeded, stratified 70%/10%/20% train/holdout/evaluation",
                "dataset.split_seed": str(seed),
                "dataset.source": "sklearn.datasets.load_digits",
            },
        )
