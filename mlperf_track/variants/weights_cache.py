"""What the on-disk weight caches share: identities, keys, file names, and reading/writing tensors only.

Three caches use it: the trained image baseline (:mod:`~mlperf_track.variants.baseline_cache`), the trained
text baseline (:mod:`~mlperf_track.variants.text_baseline`) and the retrained variants
(:mod:`~mlperf_track.variants.variant_cache`). An entry is one ``torch.save`` file of ``{"state_dict": ...,
"meta": ...}`` holding tensors, numbers, strings, lists and dicts only; it is read back with
``torch.load(weights_only=True)``, so a cache file can never run code. It is written to a temporary file and
moved into place with :func:`os.replace`: a concurrent reader sees the old file or the new one, and two
processes writing the same key leave one whole file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mlperf_track.models.base import LoadedModel

logger = logging.getLogger(__name__)


def weights_fingerprint(module: nn.Module) -> str:
    """SHA-256 of the module's state (names, shapes and values), so two files with one name never collide."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def model_identity(loaded: LoadedModel) -> dict[str, str]:
    """What identifies a loaded model in a cache key: name, source, where its weights came from, their hash."""
    return {
        "model": loaded.name,
        "source": loaded.source,
        "weights": loaded.weights,
        "weights_sha": weights_fingerprint(loaded.module),
    }


def dataset_size(dataset: object) -> int | None:
    """The length of a split for a cache key (``None`` for a missing split)."""
    return len(dataset) if dataset is not None else None  # type: ignore[arg-type]


def digest(parts: Mapping[str, Any]) -> str:
    """A 24-hex-digit key of ``parts`` (JSON with sorted keys; values that are not JSON become ``str``)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def entry_path(cache_dir: Path, folder: str, name: str, key: str) -> Path:
    """``cache_dir/<folder>/<name>-<key>.pt``, the name made safe for a file system."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:60]
    return Path(cache_dir) / folder / f"{safe}-{key}.pt"


def read_entry(path: Path, what: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """The state dict and meta of a cache file, or ``None`` when it is missing or unreadable (logged)."""
    if not path.is_file():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        state, meta = saved["state_dict"], dict(saved["meta"])
        if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
            raise TypeError("the state dict is not a mapping of tensors")
    except Exception as error:  # torch.load raises many types (UnpicklingError, EOFError, ...): rebuild
        logger.warning("ignoring the unreadable cached %s %s: %s: %s", what, path, type(error).__name__, error)
        return None
    return state, meta


def shape_mismatch(module: nn.Module, state: Mapping[str, torch.Tensor]) -> str | None:
    """Why ``state`` does not fit ``module`` (missing or extra names, other shapes or dtypes), or ``None``."""
    expected = module.state_dict()
    missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or extra:
        return f"missing {missing[:3]}, unexpected {extra[:3]}"
    for name, tensor in expected.items():
        found = state[name]
        if tensor.shape != found.shape or tensor.dtype != found.dtype:
            return f"{name}: {tuple(found.shape)} {found.dtype}, expected {tuple(tensor.shape)} {tensor.dtype}"
    return None


def load_into(module: nn.Module, path: Path, what: str) -> dict[str, Any] | None:
    """Load a cache file's weights into ``module`` and return its meta, or ``None`` (missing, unreadable, or
    not fitting the module: then ``module`` is left untouched and the reason logged)."""
    entry = read_entry(path, what)
    if entry is None:
        return None
    state, meta = entry
    mismatch = shape_mismatch(module, state)
    if mismatch is not None:
        logger.warning("ignoring the cached %s %s, which does not fit the model: %s", what, path, mismatch)
        return None
    module.load_state_dict(state)
    return meta


def write_entry(module: nn.Module, meta: Mapping[str, Any], path: Path) -> None:
    """Write the module's state dict and ``meta`` atomically (a unique temporary file, then :func:`os.replace`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.tmp{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        torch.save({"state_dict": module.state_dict(), "meta": dict(meta)}, temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
