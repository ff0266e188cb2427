"""``tinycnn``: a ~11k-parameter CNN meant for tests and smoke runs, selectable by name like torchvision models.

It has the layers that real CNNs have (Conv2d, BatchNorm2d, ReLU, pooling, a Linear head at ``.fc``), so
quantization, pruning, export and every runtime exercise their real code paths in milliseconds. It accepts any
input of at least 8x8 pixels; 32 is its nominal size. Its accuracy means nothing until it is fine-tuned.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from mlperf_track.models.base import LoadedModel, ModelSource
from mlperf_track.models.heads import classifier_out_features
from mlperf_track.models.weights import apply_weights, check_weights_path, seeded_init

#: The name under which the tiny model is registered.
TINY_NAME = "tinycnn"
#: Classes of the default head (the digits dataset has 10).
TINY_NUM_CLASSES = 10
#: Nominal input resolution.
TINY_IMAGE_SIZE = 32


def _conv_block(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class TinyCNN(nn.Module):
    """Three conv-BN-ReLU blocks, global average pooling and a Linear head.

    Args:
        num_classes: Outputs of the head.
    """

    def __init__(self, num_classes: int = TINY_NUM_CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_block(3, 16, stride=1),
            nn.MaxPool2d(2),
            _conv_block(16, 24, stride=1),
            _conv_block(24, 32, stride=2),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(batch, num_classes)`` for images of shape ``(batch, 3, H, W)``."""
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


class TinySource(ModelSource):
    """The ``tinycnn`` test model."""

    name = "tiny"

    def matches(self, ref: str) -> bool:
        """Whether ``ref`` is ``tinycnn``."""
        return ref == TINY_NAME

    def known_names(self) -> list[str]:
        """``["tinycnn"]``."""
        return [TINY_NAME]

    def load(self, ref: str, *, weights: str | None = None) -> LoadedModel:
        """Build ``tinycnn`` with a seeded initialisation, or with the weights from ``weights``.

        Raises:
            ConfigError: ``weights`` is not an existing file.
            ModelLoadError: The weights do not fit the architecture.
        """
        start = time.perf_counter()
        weights_path = check_weights_path(weights) if weights is not None else None
        with seeded_init():
            module: nn.Module = TinyCNN()
        origin = "random"
        if weights_path is not None:
            module = apply_weights(module, weights_path)
            origin = f"file:{weights_path}"
        module = module.eval()
        return LoadedModel(
            module=module,
            name=TINY_NAME,
            source=self.name,
            load_s=time.perf_counter() - start,
            weights=origin,
            num_classes=classifier_out_features(module),
            default_image_size=TINY_IMAGE_SIZE,
            tags={"model.purpose": "tests and smoke runs"},
        )
