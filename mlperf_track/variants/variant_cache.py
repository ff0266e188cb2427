"""The on-disk cache of variants that train (pruning with its recovery fine-tune, distillation).

Only the baseline used to be cached, so every run of the pipeline fine-tuned the pruned models and trained the
student again: about a minute each for resnet50 on two cores, most of a cached run's wall time. A recipe that
trains now asks :func:`variant_cache` for its entry before training and, on a hit, loads the trained weights
into the structure it rebuilds without training (a copy of the baseline, the channel-pruned graph, the
student with its head), or trains and writes the entry on a miss.

The key (:func:`variant_key`) holds everything that changes the trained weights: the recipe and its parsed
settings, the weights it starts from (a hash of the source model's state: the baseline's, or the previous
step's in a composition), the data (dataset, split sizes, classes, image size), the seed and the pipeline's
epochs, the training rule and rates of :mod:`~mlperf_track.variants.retrain`, the device type, the torch
version and :data:`CACHE_VERSION`. Files hold tensors only (:mod:`~mlperf_track.variants.weights_cache`): a
file that is unreadable or whose tensors do not fit the rebuilt structure is ignored with a log line and the
variant is trained again (and the file rewritten).

The artifact says where it came from: ``variant.cached`` (``true``/``false``) and ``variant.cache_key``, and
on a hit the tags of the training run that produced the weights (``variant.train_s``, ``variant.train_stop``,
``prune.fine_tune``, ``distill.*``...), so the child run still reports the training budget the variant had.

:class:`VariantCache` also serves :mod:`~mlperf_track.variants.pt2e_cache`, which rebuilds its module from the
entry (:meth:`VariantCache.read`) instead of loading weights into a structure.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mlperf_track import metrics
from mlperf_track.models.artifact import ModelArtifact
from mlperf_track.variants.base import VariantContext
from mlperf_track.variants.common import CONVERGE_TRAIN, DEFAULT_TRAIN
from mlperf_track.variants.retrain import RECOVERY_LR, VARIANT_STOPPING, recovery_target
from mlperf_track.variants.weights_cache import (
    dataset_size,
    digest,
    entry_path,
    load_into,
    read_entry,
    weights_fingerprint,
    write_entry,
)

logger = logging.getLogger(__name__)

#: Bump when the file layout or the training code of the retraining recipes changes meaning. 2: distillation
#: against stored teacher outputs, BatchNorm recalibration under the training precision's autocast.
CACHE_VERSION = 2
#: The folder under the cache root.
FOLDER = "variants"


def variant_key(
    recipe: str, source: ModelArtifact, context: VariantContext, settings: Mapping[str, object]
) -> str | None:
    """The key of ``recipe`` applied to ``source`` with ``settings`` (its parsed options), or ``None`` when
    ``source`` has no PyTorch module."""
    if source.module is None:
        return None
    data = context.data
    parts = {
        "version": CACHE_VERSION,
        "recipe": recipe,
        "settings": dict(settings),
        "source": {
            "name": source.name,
            "class": f"{type(source.module).__module__}.{type(source.module).__qualname__}",
            "weights_sha": weights_fingerprint(source.module),
            "baseline_key": source.tags.get("baseline.cache_key"),
        },
        "data": {
            "dataset": data.name,
            "train": dataset_size(data.train),
            "holdout": dataset_size(data.holdout),
            "val": dataset_size(data.val),
            "classes": data.num_classes,
            "image_size": context.image_size,
        },
        "seed": context.seed,
        "epochs": context.epochs,
        "train_precision": context.train_precision,
        "training": {
            "stopping": VARIANT_STOPPING.to_dict(),
            "target_top1": recovery_target(source.tags),
            "recovery_lr": RECOVERY_LR,
            "converge": dataclasses.asdict(CONVERGE_TRAIN),
            "fixed": dataclasses.asdict(DEFAULT_TRAIN),
        },
        "device": context.device.split(":", maxsplit=1)[0],
        "torch": torch.__version__,
    }
    return digest(parts)


@dataclass(frozen=True)
class VariantCache:
    """One recipe's cache entry for one source and context (``path`` ``None``: caching is off).

    Attributes:
        recipe: The recipe's name (for the log).
        key: The entry's key, or ``None`` when nothing is cached.
        path: The entry's file, or ``None`` when nothing is cached.
    """

    recipe: str
    key: str | None = None
    path: Path | None = None

    def load(self, module: nn.Module) -> dict[str, str] | None:
        """Load the cached weights into ``module`` (left untouched on a miss) and return the artifact tags of
        the run that trained them plus ``variant.cached=true``, or ``None`` on a miss."""
        if self.path is None:
            return None
        meta = load_into(module, self.path, f"variant {self.recipe}")
        return None if meta is None else self.loaded_tags(meta)

    def read(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """The entry's tensors and meta, for a recipe that rebuilds its module from them (``None``: caching is
        off, or the file is missing or unreadable, which is logged)."""
        if self.path is None:
            return None
        return read_entry(self.path, f"variant {self.recipe}")

    def loaded_tags(self, meta: Mapping[str, Any]) -> dict[str, str]:
        """Log a hit; the artifact tags saved with the entry plus ``variant.cached=true``."""
        logger.info("loaded variant %s from the cache: %s", self.recipe, self.path)
        tags = {str(name): str(value) for name, value in dict(meta.get("tags", {})).items()}
        return {**tags, **self.tags(cached=True)}

    def save(
        self, module: nn.Module, tags: Mapping[str, str], extra: Mapping[str, Any] | None = None
    ) -> dict[str, str]:
        """Write the built ``module`` with its artifact ``tags`` (and ``extra`` meta: plain data only); returns
        the tags plus ``variant.cached=false``.

        A failed write (full disk, read-only cache) is logged and leaves the variant as built.
        """
        if self.path is None:
            return dict(tags)
        try:
            write_entry(module, {**(extra or {}), "recipe": self.recipe, "tags": dict(tags)}, self.path)
        except OSError as error:
            logger.warning("could not cache variant %s in %s: %s", self.recipe, self.path, error)
        return {**tags, **self.tags(cached=False)}

    def tags(self, *, cached: bool) -> dict[str, str]:
        """``variant.cached`` and ``variant.cache_key`` (nothing when caching is off)."""
        if self.key is None:
            return {}
        return {metrics.VARIANT_CACHED_TAG: str(cached).lower(), metrics.VARIANT_CACHE_KEY_TAG: self.key}


def variant_cache(
    recipe: str, source: ModelArtifact, context: VariantContext, settings: Mapping[str, object]
) -> VariantCache:
    """The cache entry of ``recipe`` for ``source`` (off when ``context.cache_dir`` is ``None``)."""
    if context.cache_dir is None:
        return VariantCache(recipe)
    key = variant_key(recipe, source, context, settings)
    if key is None:
        return VariantCache(recipe)
    return VariantCache(recipe, key, entry_path(context.cache_dir, FOLDER, f"{source.name}-{recipe}", key))
