"""Calibration inputs for static quantization: training images, or seeded noise when there are none."""

from __future__ import annotations

import logging

import torch

from mlperf_track.options import OptionSpec
from mlperf_track.variants.base import VariantContext
from mlperf_track.variants.common import image_batches, subset
from mlperf_track.variants.options import option_int

logger = logging.getLogger(__name__)

#: Images per calibration batch.
CALIBRATION_BATCH = 32
#: Calibration images used unless ``--option calibration_samples=N`` says otherwise.
DEFAULT_CALIBRATION_SAMPLES = 256
#: The option every static-quantization variant declares.
CALIBRATION_SAMPLES_OPTION = OptionSpec(
    "calibration_samples",
    "training images used for calibration",
    "int",
    low=1,
    default=str(DEFAULT_CALIBRATION_SAMPLES),
)


def calibration_samples(context: VariantContext) -> int:
    """The ``calibration_samples`` option of ``context`` (default :data:`DEFAULT_CALIBRATION_SAMPLES`)."""
    return option_int(context.options, "calibration_samples", DEFAULT_CALIBRATION_SAMPLES, minimum=1)


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
