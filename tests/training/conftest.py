"""A tiny, learnable problem: which of two image halves is brighter, on 8x8 images."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset


def make_halves(count: int, seed: int = 0) -> TensorDataset:
    """Label 1 when the left half of the image is brighter than the right half, else 0."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(count, 3, 8, 8, generator=generator) * 0.5
    labels = torch.randint(0, 2, (count,), generator=generator)
    images[labels == 1, :, :, :4] += 1.0
    images[labels == 0, :, :, 4:] += 1.0
    return TensorDataset(images, labels)


class SmallNet(nn.Module):
    """Conv-BN-ReLU, global pooling and a Linear head (about 300 parameters)."""

    def __init__(self, num_classes: int = 2, width: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d((1, 2))
        self.fc = nn.Linear(width * 2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


@pytest.fixture
def halves() -> TensorDataset:
    return make_halves(256)


@pytest.fixture
def halves_val() -> TensorDataset:
    return make_halves(128, seed=1)


@pytest.fixture
def small_net() -> SmallNet:
    torch.manual_seed(0)
    return SmallNet()
