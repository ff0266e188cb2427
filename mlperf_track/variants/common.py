"""Helpers shared by the recipes: copying the baseline, deriving artifacts, data subsets, training settings."""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from mlperf_track.engine.precision import emulated_reason
from mlperf_track.errors import ConfigError, DataError, UnsupportedError
from mlperf_track.spec import TRAIN_PRECISION_CHOICES
from mlperf_track.training.loop import TrainConfig

if TYPE_CHECKING:
    from mlperf_track.models.artifact import ModelArtifact
    from mlperf_track.variants.base import VariantContext

logger = logging.getLogger(__name__)

#: Fine-tuning settings shared by the baseline, recovery after pruning and distillation when a fixed number of
#: epochs is asked for (see :mod:`mlperf_track.variants.baseline` for how they were chosen).
DEFAULT_TRAIN = TrainConfig(epochs=1, batch_size=32, lr=1e-3, optimizer="adamw", schedule="cosine", weight_decay=0.01)
#: The same settings for training until the holdout top-1 stops improving: with no known end there is no
#: cosine horizon, so the rate stays constant and is cut x0.2 each epoch the holdout top-1 does not improve.
CONVERGE_TRAIN = dataclasses.replace(DEFAULT_TRAIN, schedule="plateau", plateau_patience=1, plateau_factor=0.2)


def resolve_train_precision(requested: str, device: str) -> str:
    """The precision training runs in on ``device``: ``fp32`` or ``bf16`` (mixed precision).

    ``auto`` takes bf16 where the device computes it natively (a CPU with AVX512-BF16 or AMX, a GPU of compute
    capability 8.0+), where it trains about 1.6x faster (resnet50 at 64 px on digits, the project's quiet 2-core
    AVX512-BF16 machine: an epoch 24 s in fp32, 15 s in bf16) to the same accuracy within the evaluation split's
    resolution (converged top-1 0.978 in fp32, 0.972 in bf16: two images of 359); else fp32. ``bf16`` asked for
    on a device that would only emulate it is honoured with a warning (slower, same numbers).

    Raises:
        ConfigError: ``requested`` is not one of :data:`TRAIN_PRECISION_CHOICES`.
    """
    choice = str(requested).strip().lower()
    if choice not in TRAIN_PRECISION_CHOICES:
        raise ConfigError("train_precision", requested, list(TRAIN_PRECISION_CHOICES))
    emulated = emulated_reason("bf16", device)
    if choice == "auto":
        return "fp32" if emulated else "bf16"
    if choice == "bf16" and emulated:
        logger.warning("train_precision=bf16: %s, so training is emulated and slower than fp32", emulated)
    return choice


def copy_module(baseline: ModelArtifact, recipe: str) -> nn.Module:
    """A deep copy of the baseline's module on the CPU, in eval mode (the baseline is never modified).

    Recipes work on the CPU (calibration, casts, pruning bookkeeping); the runtime then places the artifact
    on the case's device, unless the recipe pins it with ``ModelArtifact.device`` (:func:`derive`'s
    ``device=...``) because its kernels exist on one device only.

    Raises:
        UnsupportedError: The baseline has no PyTorch module (an ONNX-only artifact).
    """
    if baseline.module is None:
        raise UnsupportedError(
            "variant", recipe, hint=f"{recipe} needs a PyTorch module, but {baseline.name} is ONNX-only"
        )
    return copy.deepcopy(baseline.module).cpu().eval()


def derive(
    baseline: ModelArtifact, recipe: str, module: nn.Module | None, tags: dict[str, str], **changes: object
) -> ModelArtifact:
    """The baseline artifact with a new name, module and tags (``variant.recipe``, ``variant.base``, ``tags``)."""
    merged = {**baseline.tags, "variant.recipe": recipe, "variant.base": baseline.name, **tags}
    return dataclasses.replace(
        baseline,
        name=f"{baseline.name}-{recipe}",
        module=module,
        tags=merged,
        **changes,  # type: ignore[arg-type]
    )


def example_input(artifact: ModelArtifact, batch_size: int = 1) -> torch.Tensor:
    """A seeded float32 batch of the artifact's input shape."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch_size, *artifact.input_shape, generator=generator)


def labelled_train(context: VariantContext, purpose: str) -> Dataset:
    """The training split, or a :class:`DataError` saying that ``purpose`` needs a labelled dataset."""
    if context.data.train is None or context.data.num_classes is None:
        raise DataError(
            f"{purpose} needs a labelled dataset, but {context.data.name!r} has no training split: "
            "use --dataset digits (built in) or an imagefolder:/path"
        )
    return context.data.train


def subset(dataset: Dataset, count: int, seed: int) -> Dataset:
    """``count`` samples drawn without replacement with ``seed`` (the whole dataset when it is smaller)."""
    size = len(dataset)  # type: ignore[arg-type]
    if size == 0:
        raise DataError("the training split is empty")
    if count >= size:
        return dataset
    generator = torch.Generator().manual_seed(seed)
    indices = torch.randperm(size, generator=generator)[:count].tolist()
    return Subset(dataset, indices)


def image_batches(dataset: Dataset, *, batch_size: int) -> Iterator[torch.Tensor]:
    """The images of ``dataset`` in order, in batches (labels dropped)."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    for images, _labels in loader:
        yield images


def count_params(module: nn.Module) -> int:
    """Number of parameters."""
    return sum(param.numel() for param in module.parameters())
