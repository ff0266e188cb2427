"""Model sources: where a model comes from, registered by name in one place (:mod:`.registry`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    import torch


@dataclass
class LoadedModel:
    """A model loaded from a source.

    Attributes:
        module: The model, on CPU, in eval mode, fp32.
        name: Canonical name (``resnet18``; a file's stem; ``models:/name/1``).
        source: Name of the source that loaded it (``torchvision``, ``file``, ``mlflow``).
        load_s: Seconds spent loading (reported as ``startup/load_s``).
        weights: Where the weights came from (``random``, ``file:/path``, ``torch-cache:/path``, ...).
        num_classes: Size of the output layer, when known.
        default_image_size: The resolution the model was trained for, when known.
        tags: Other facts worth logging.
    """

    module: torch.nn.Module
    name: str
    source: str
    load_s: float
    weights: str = "random"
    num_classes: int | None = None
    default_image_size: int | None = None
    tags: dict[str, str] = field(default_factory=dict)


class ModelSource(ABC):
    """A place models come from. Members register in :mod:`mlperf_track.models.registry`."""

    #: Short name of the source (``torchvision``, ``file``).
    name: ClassVar[str]

    @abstractmethod
    def matches(self, ref: str) -> bool:
        """Whether this source understands the reference (cheap: no loading)."""

    @abstractmethod
    def load(self, ref: str, *, weights: str | None = None) -> LoadedModel:
        """Load the model. Raises ModelLoadError/ConfigError with a clear message."""

    def known_names(self) -> list[str]:
        """Names this source offers, for "did you mean" hints (empty when open-ended)."""
        return []
