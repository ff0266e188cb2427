"""The on-disk cache of trained baselines: the key (everything that changes the weights), reading and writing.

Files live under ``cache_dir/baselines/<model>-<key>.pt`` and hold the state dict and the training facts
(times, stop reason, curve). A file that cannot be read is ignored (and the baseline retrained).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mlperf_track.data.base import DatasetSplits
from mlperf_track.models.base import LoadedModel
from mlperf_track.training.config import TrainConfig
from mlperf_track.training.early_stopping import STOP_TIME_CAP, StoppingRule
from mlperf_track.variants.weights_cache import (
    dataset_size,
    digest,
    entry_path,
    load_into,
    model_identity,
    write_entry,
)

logger = logging.getLogger(__name__)

#: Bump when the cached file layout or the training code changes meaning (2: holdout split, early stopping;
#: 3: a fresh head's epoch 0 is scored without recomputing the BatchNorm statistics, which training starts from;
#: 4: BatchNorm statistics are recomputed under the training precision's autocast).
CACHE_VERSION = 4


def cache_key(
    loaded: LoadedModel,
    data: DatasetSplits,
    *,
    image_size: int,
    device: str,
    config: TrainConfig,
    num_classes: int | None,
    rule: StoppingRule | None = None,
) -> str:
    """A hex digest of everything that changes the trained weights (the stopping rule included)."""
    parts = {
        "version": CACHE_VERSION,
        **model_identity(loaded),
        "dataset": data.name,
        "train_size": dataset_size(data.train),
        "holdout_size": dataset_size(data.holdout),
        "val_size": dataset_size(data.val),
        "image_size": image_size,
        "num_classes": num_classes,
        "device": device.split(":", maxsplit=1)[0],
        "train": dataclasses.asdict(config),
        "stopping": rule.to_dict() if rule is not None else None,
        "torch": torch.__version__,
    }
    return digest(parts)


def cache_path(cache_dir: Path, name: str, key: str) -> Path:
    """``cache_dir/baselines/<name>-<key>.pt``, the name made safe for a file system."""
    return entry_path(cache_dir, "baselines", name, key)


def load_cached(module: nn.Module, path: Path) -> dict[str, Any] | None:
    """Load the cached weights into ``module`` and return the training facts, or ``None`` (missing, unreadable,
    not fitting the model)."""
    meta = load_into(module, path, "baseline")
    if meta is None:
        return None
    logger.info("loaded the trained baseline from the cache: %s", path)
    if meta.get("stop_reason") == STOP_TIME_CAP:
        logger.warning(
            "the cached baseline %s stopped at its time cap before it converged; delete the file to train it again",
            path,
        )
    return meta


def save_cached(module: nn.Module, meta: dict[str, Any], path: Path) -> None:
    """Write the state dict and ``meta`` atomically: a concurrent reader sees the old file or the new one."""
    write_entry(module, meta, path)
