"""The on-disk cache of trained baselines: the key (everything that changes the weights), reading and writing.

Files live under ``cache_dir/baselines/<model>-<key>.pt`` and hold the state dict and the training facts
(times, stop reason, curve). A file that cannot be read is ignored (and the baseline retrained).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mlperf_track.data.base import DatasetSplits
from mlperf_track.models.base import LoadedModel
from mlperf_track.training.config import TrainConfig
from mlperf_track.training.early_stopping import STOP_TIME_CAP, StoppingRule

logger = logging.getLogger(__name__)

#: Bump when the cached file layout or the training code changes meaning (2: holdout split, early stopping).
CACHE_VERSION = 2


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
        "model": loaded.name,
        "source": loaded.source,
        "weights": loaded.weights,
        "weights_sha": weights_fingerprint(loaded.module),
        "dataset": data.name,
        "train_size": _size(data.train),
        "holdout_size": _size(data.holdout),
        "val_size": _size(data.val),
        "image_size": image_size,
        "num_classes": num_classes,
        "device": device.split(":", maxsplit=1)[0],
        "train": dataclasses.asdict(config),
        "stopping": rule.to_dict() if rule is not None else None,
        "torch": torch.__version__,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _size(dataset: object) -> int | None:
    return len(dataset) if dataset is not None else None  # type: ignore[arg-type]


def weights_fingerprint(module: nn.Module) -> str:
    """SHA-256 of the module's state (names, shapes and values), so two files with one name never collide."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cache_path(cache_dir: Path, name: str, key: str) -> Path:
    """``cache_dir/baselines/<name>-<key>.pt``, the name made safe for a file system."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:60]
    return Path(cache_dir) / "baselines" / f"{safe}-{key}.pt"


def load_cached(module: nn.Module, path: Path) -> dict[str, Any] | None:
    """Load the cached weights into ``module`` and return the training facts, or ``None`` (missing, unreadable)."""
    if not path.is_file():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        module.load_state_dict(saved["state_dict"])
    except Exception as error:  # torch.load raises many types (UnpicklingError, EOFError, ...): retrain
        logger.warning("ignoring unreadable cached baseline %s: %s", path, error)
        return None
    meta = dict(saved["meta"])
    logger.info("loaded the trained baseline from the cache: %s", path)
    if meta.get("stop_reason") == STOP_TIME_CAP:
        logger.warning(
            "the cached baseline %s stopped at its time cap before it converged; delete the file to train it again",
            path,
        )
    return meta


def save_cached(module: nn.Module, meta: dict[str, Any], path: Path) -> None:
    """Write the state dict and ``meta`` atomically: a concurrent reader sees the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"state_dict": module.state_dict(), "meta": meta}, temporary)
    os.replace(temporary, path)
