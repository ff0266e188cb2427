"""Calibration inputs for static quantization: training images, or seeded noise when there are none."""

from __future__ import annotations

import logging

import torch

from mlperf_track.variants.base import VariantContext
from mlperf_track.variants.common import image_batches, subset

logger = logging.getLogger(__name__)

#: Images per calibration batch.
CALIBRATION_BATCH = 32


def calibration_batches(
    context: VariantContext, input_shape: tuple[int, ...], samples: int
) -> tuple[list[torch.Tensor], str]:
    """``samples`` calibration images in batches, and where they came from.

    The images are a seeded random subset of the training split. A dataset without one (``synthetic``) gets
    seeded standard-normal images instead: the model then runs at int8 speed, but its accuracy is unknown
    (and is not measured on such a dataset anyway).

    Returns:
        ``(batches, source)`` with ``source`` either ``"train split of <dataset>"`` or ``"random"``.
    """
    train = context.data.train
    if train is not None:
        chosen = subset(train, samples, context.seed)
        return list(image_batches(chosen, batch_size=CALIBRATION_BATCH)), f"train split of {context.data.name}"
    logger.warning("no training split in %s: calibrating on random images", context.data.name)
    generator = torch.Generator().manual_seed(context.seed)
    batches = []
    for start in range(0, samples, CALIBRATION_BATCH):
        count = min(CALIBRATION_BATCH, samples - start)
        batches.append(torch.randn(count, *input_shape, generator=generator))
    return batches, "random"
