"""The baseline: the loaded model with a head for the dataset's classes, fine-tuned so accuracy means something.

Fine-tuning settings (:data:`~mlperf_track.variants.common.DEFAULT_TRAIN`): AdamW, lr 1e-3 with a short linear
warm-up and a cosine decay, weight decay 0.01, batch 32, seeded data order, BatchNorm statistics recomputed
at the end. Measured on the project's 2-core AVX512 machine, from random initialisation on ``digits`` (1438
training images): resnet18 at 32 px reaches 0.947 top-1 after one epoch (6.8 s quiet) and 0.975-0.978 after
two (about 15 s quiet, 45-90 s while the machine is shared), where SGD (lr 0.02-0.05) reached 0.84-0.93
after one; resnet50 at 64 px reaches 0.82 after one epoch (38 s quiet, 270 s shared). :data:`DEFAULT_EPOCHS`
is 2: about a minute for resnet18 at 32 px on a busy 2-core machine.

The result is cached under ``cache_dir/baselines`` keyed by everything that changes it (model, a fingerprint
of its initial weights, dataset and split sizes, image size, epochs, seed, classes, training settings,
device, torch version), so a second run loads it instead of retraining.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mlperf_track.data.base import DatasetSplits
from mlperf_track.engine.accuracy import evaluate_accuracy, module_predictor
from mlperf_track.errors import ConfigError
from mlperf_track.models.artifact import ModelArtifact
from mlperf_track.models.base import LoadedModel
from mlperf_track.training.loop import TrainConfig, train
from mlperf_track.variants.common import DEFAULT_TRAIN

logger = logging.getLogger(__name__)

#: Fine-tuning epochs recommended for the baseline (see the module docstring).
DEFAULT_EPOCHS = 2
#: Bump when the cached file layout or the training code changes meaning.
CACHE_VERSION = 1


@dataclass
class PreparedBaseline:
    """The baseline ready for variants and runtimes.

    Attributes:
        artifact: The fine-tuned (or as-loaded) model.
        facts: Facts for MLflow tags: ``baseline.cached``, ``baseline.trained``, ``baseline.train_s`` (seconds
            the fine-tune took when it ran, also when loaded from the cache), ``baseline.val_top1``,
            ``baseline.epochs``, ``baseline.head_replaced``, ``baseline.cache_key``, ...
        cached: Whether the fine-tuned weights came from the on-disk cache.
    """

    artifact: ModelArtifact
    facts: dict[str, str]
    cached: bool


def prepare_baseline(
    loaded: LoadedModel,
    data: DatasetSplits,
    *,
    image_size: int,
    epochs: int,
    device: str,
    seed: int,
    cache_dir: Path,
    train_config: TrainConfig | None = None,
) -> PreparedBaseline:
    """Give the model a head for ``data``'s classes and fine-tune it on the training split (cached on disk).

    Nothing is trained for a dataset without labels (``synthetic``) or with ``epochs=0``. ``loaded`` is not
    modified.

    Args:
        loaded: The model as loaded.
        data: The dataset; its train split is used for fine-tuning, its val split for ``baseline.val_top1``.
        image_size: Input resolution.
        epochs: Fine-tuning epochs (:data:`DEFAULT_EPOCHS` is a good default on a CPU).
        device: Where to train (``cpu`` or ``cuda``).
        seed: Seed for the head's initialisation, the data order and training.
        cache_dir: Root of the cache; files go to ``cache_dir/baselines``.
        train_config: Training settings; :data:`DEFAULT_TRAIN` with ``epochs`` and ``seed`` when ``None``.

    Returns:
        The prepared baseline.

    Raises:
        ConfigError: ``epochs`` is negative.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise ConfigError("epochs", epochs, "an integer >= 0")
    config = dataclasses.replace(train_config or DEFAULT_TRAIN, epochs=epochs, seed=seed)
    module = copy.deepcopy(loaded.module).cpu().eval()
    head_replaced = _fit_head(module, data.num_classes, seed)
    num_classes = data.num_classes or loaded.num_classes
    facts = {"baseline.epochs": str(epochs), "baseline.head_replaced": str(head_replaced).lower()}
    trainable = data.train is not None and data.num_classes is not None and epochs > 0
    cached = False
    if not trainable:
        reason = "epochs=0" if epochs == 0 else f"dataset {data.name!r} has no labelled training split"
        logger.info("baseline %s is used as loaded (%s)", loaded.name, reason)
        facts.update({"baseline.trained": "false", "baseline.cached": "false", "baseline.not_trained_reason": reason})
        val_top1 = _val_top1(module, data)
    else:
        key = cache_key(loaded, data, image_size=image_size, device=device, config=config, num_classes=num_classes)
        path = _cache_path(cache_dir, loaded.name, key)
        meta = _load_cached(module, path)
        cached = meta is not None
        if meta is None:
            meta = _train_and_save(module, data, config, device=device, path=path, name=loaded.name)
        val_top1 = meta.get("val_top1")
        facts.update(_trained_facts(meta, cached=cached, key=key))
    if val_top1 is not None:
        facts["baseline.val_top1"] = f"{float(val_top1):.4f}"
    artifact = ModelArtifact(
        name=loaded.name,
        input_shape=(3, image_size, image_size),
        module=module,
        num_classes=num_classes,
        tags={"variant.recipe": "baseline", "baseline.weights": loaded.weights, **facts},
    )
    return PreparedBaseline(artifact=artifact, facts=facts, cached=cached)


def _trained_facts(meta: dict[str, float | None], *, cached: bool, key: str) -> dict[str, str]:
    return {
        "baseline.trained": "true",
        "baseline.cached": str(cached).lower(),
        "baseline.train_s": f"{meta.get('train_s') or 0.0:.2f}",
        "baseline.cache_key": key,
    }


def _fit_head(module: nn.Module, num_classes: int | None, seed: int) -> bool:
    """Replace the head when the dataset has another number of classes; the new head is seeded."""
    if num_classes is None:
        return False
    from mlperf_track.models.heads import classifier_out_features, replace_classifier

    if classifier_out_features(module) == num_classes:
        return False
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        replace_classifier(module, num_classes)
    return True


def _val_top1(module: nn.Module, data: DatasetSplits) -> float | None:
    if data.val is None or data.num_classes is None:
        return None
    return evaluate_accuracy(module_predictor(module), data.val).top1


def _train_and_save(
    module: nn.Module, data: DatasetSplits, config: TrainConfig, *, device: str, path: Path, name: str
) -> dict[str, float | None]:
    assert data.train is not None
    logger.info(
        "fine-tuning baseline %s on %s for %d epoch(s) on %s (%d training images)",
        name,
        data.name,
        config.epochs,
        device,
        len(data.train),  # type: ignore[arg-type]
    )
    start = time.perf_counter()
    result = train(module, data.train, config, device=device, description=f"fine-tune {name}")
    train_s = time.perf_counter() - start
    val_top1 = _val_top1(module, data)
    logger.info("baseline %s fine-tuned in %.1f s, val top-1 %s", name, train_s, val_top1)
    meta: dict[str, float | None] = {"train_s": train_s, "val_top1": val_top1, "final_loss": result.final_loss}
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"state_dict": module.state_dict(), "meta": meta}, temporary)
    os.replace(temporary, path)  # atomic: a concurrent reader sees the old file or the new one
    return meta


def _load_cached(module: nn.Module, path: Path) -> dict[str, float | None] | None:
    if not path.is_file():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        module.load_state_dict(saved["state_dict"])
    except Exception as error:  # torch.load raises many types (UnpicklingError, EOFError, ...): retrain
        logger.warning("ignoring unreadable cached baseline %s: %s", path, error)
        return None
    logger.info("loaded the fine-tuned baseline from the cache: %s", path)
    return dict(saved["meta"])


def cache_key(
    loaded: LoadedModel,
    data: DatasetSplits,
    *,
    image_size: int,
    device: str,
    config: TrainConfig,
    num_classes: int | None,
) -> str:
    """A hex digest of everything that changes the fine-tuned weights."""
    parts = {
        "version": CACHE_VERSION,
        "model": loaded.name,
        "source": loaded.source,
        "weights": loaded.weights,
        "weights_sha": weights_fingerprint(loaded.module),
        "dataset": data.name,
        "train_size": _size(data.train),
        "val_size": _size(data.val),
        "image_size": image_size,
        "num_classes": num_classes,
        "device": device.split(":", maxsplit=1)[0],
        "train": dataclasses.asdict(config),
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


def _cache_path(cache_dir: Path, name: str, key: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:60]
    return Path(cache_dir) / "baselines" / f"{safe}-{key}.pt"
