"""Datasets: labelled image splits for accuracy and calibration, or synthetic input for performance only."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from torch.utils.data import Dataset


@dataclass
class DatasetSplits:
    """The three splits of an image-classification dataset, none used for two jobs.

    - ``train``: fitted on (fine-tuning, recovery after pruning, distillation, calibration);
    - ``holdout``: only watched while training (early stopping, choosing the best checkpoint);
    - ``val``: the evaluation split, where every accuracy number users see is measured. Nothing is ever
      trained or selected on it, so its accuracies are unbiased.

    Each item of a split is ``(image, label)``: ``image`` a float32 tensor of shape ``(3, S, S)``, normalised
    with the ImageNet mean and std; ``label`` an ``int``. Synthetic data has no splits. A source may leave
    ``holdout`` empty: :func:`mlperf_track.data.registry.load_dataset` then sets a seeded, stratified share of
    ``train`` aside (:func:`mlperf_track.data.common.with_holdout`).

    Attributes:
        name: Dataset reference as given (``digits``, ``imagefolder:/data/pets``).
        image_size: ``S``.
        num_classes: Number of classes, or ``None`` for synthetic data.
        train: Training split, or ``None``.
        val: Evaluation split (every reported accuracy), or ``None``.
        holdout: Holdout split (early stopping and model selection), or ``None``.
        class_names: Class names in label order, when known.
        tags: Facts worth logging (sizes, seed, source path).
    """

    name: str
    image_size: int
    num_classes: int | None = None
    train: Dataset | None = None
    val: Dataset | None = None
    holdout: Dataset | None = None
    class_names: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def has_labels(self) -> bool:
        """Whether accuracy can be measured on this dataset."""
        return self.val is not None and self.num_classes is not None


class DatasetSource(ABC):
    """A kind of dataset, addressed as ``scheme`` or ``scheme:argument``. Registered in :mod:`.registry`."""

    #: The scheme before the colon (``digits``, ``synthetic``, ``imagefolder``, ``torchvision``).
    scheme: ClassVar[str]

    @abstractmethod
    def load(self, argument: str | None, *, image_size: int, seed: int = 0) -> DatasetSplits:
        """Load the dataset. Raises DataError/ConfigError naming the problem."""
