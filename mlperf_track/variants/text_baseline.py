"""The baseline of a text model: a decoder trained on the corpus, an encoder trained on the classification task.

A text model from ``hf-config:`` starts from random weights, so its quality means nothing until trained: the
decoder learns next-token prediction on ``pydoc-topics``, the encoder (with a classification head on its first
token) learns ``stdlib-docstrings``, each with :func:`~mlperf_track.training.text.train_text_model` until the
holdout loss stops improving (or a few minutes pass). The trained weights are cached under
``cache_dir/baselines`` keyed by everything that changes them (model, initial weights, dataset and window
length, tokenizer, training settings, device, torch and transformers versions), like the image baseline, so
the training runs once per machine. Synthetic data (or ``train_max_steps=0``) leaves the model as loaded.

Options (``--option``): ``train_max_steps``, ``train_max_seconds``, ``train_eval_every``, ``train_lr``,
``train_batch_size`` override :class:`~mlperf_track.training.text.TextTrainConfig`'s fields.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mlperf_track.data.text import TextDataset
from mlperf_track.models.artifact import ModelArtifact, TokenInputs
from mlperf_track.models.text import CausalLanguageModel, LoadedTextModel, TokenClassifier, hf_config_of
from mlperf_track.options import OptionSpec
from mlperf_track.training.text import (
    STOP_TIME_CAP,
    TextTrainConfig,
    TextTrainResult,
    classification_loss,
    language_model_loss,
    train_text_model,
)
from mlperf_track.variants.baseline import PreparedBaseline
from mlperf_track.variants.options import option_float, option_int
from mlperf_track.variants.weights_cache import digest, entry_path, load_into, model_identity, write_entry

logger = logging.getLogger(__name__)

#: Bump when the cached file's meaning changes.
CACHE_VERSION = 1
#: Classes of the head of an encoder benchmarked on synthetic data (performance only: the head is tiny).
SYNTHETIC_CLASSES = 2


#: The options of a text model's training (the baseline, and the recipes that train: distillation, pruning).
TEXT_TRAIN_OPTIONS = (
    OptionSpec("train_max_steps", "text models: most training steps (0: no training)", "int", low=0, default="4000"),
    OptionSpec("train_max_seconds", "text models: training time cap in seconds", "float", low=0, default="240"),
    OptionSpec("train_eval_every", "text models: steps between holdout evaluations", "int", low=1, default="100"),
    OptionSpec("train_lr", "text models: peak learning rate (AdamW)", "float", low=0, default="0.002"),
    OptionSpec("train_batch_size", "text models: sequences per training step", "int", low=1, default="16"),
)


def text_train_config(options: Mapping[str, str], seed: int) -> TextTrainConfig:
    """The default training settings with the ``train_*`` options applied (``train_max_steps=0``: no training)."""
    base = TextTrainConfig(seed=seed)
    seconds = option_float(options, "train_max_seconds", base.max_seconds or 0.0, low=0.0)
    return dataclasses.replace(
        base,
        max_steps=max(option_int(options, "train_max_steps", base.max_steps), 1),
        max_seconds=seconds,
        eval_every=option_int(options, "train_eval_every", base.eval_every, minimum=1),
        lr=option_float(options, "train_lr", base.lr, low=0.0),
        batch_size=option_int(options, "train_batch_size", base.batch_size, minimum=1),
    )


def build_text_module(loaded: LoadedTextModel, num_classes: int | None, seed: int) -> nn.Module:
    """A copy of the loaded model in its benchmark form: a :class:`CausalLanguageModel` or :class:`TokenClassifier`."""
    inner = copy.deepcopy(loaded.module).cpu().eval()
    if loaded.text.kind == "decoder":
        return CausalLanguageModel(inner).eval()
    hidden = int(getattr(hf_config_of(inner), "hidden_size", 0) or inner.get_input_embeddings().embedding_dim)  # type: ignore[operator]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return TokenClassifier(inner, hidden, num_classes or SYNTHETIC_CLASSES).eval()


def text_artifact(loaded: LoadedTextModel, module: nn.Module, seq_len: int, tags: dict[str, str]) -> ModelArtifact:
    """The artifact of a text model: token inputs, ``input_shape`` ``(seq_len,)``."""
    info = loaded.text
    return ModelArtifact(
        name=loaded.name,
        input_shape=(seq_len,),
        module=module,
        num_classes=getattr(getattr(module, "fc", None), "out_features", None),
        tokens=TokenInputs(info.vocab_size, info.max_positions, info.kind),
        tags=tags,
    )


def prepare_text_baseline(
    loaded: LoadedTextModel,
    data: TextDataset,
    *,
    device: str,
    seed: int,
    cache_dir: Path,
    options: Mapping[str, str] | None = None,
) -> PreparedBaseline:
    """Give the text model its benchmark form and train it on ``data`` (cached on disk).

    Args:
        loaded: The text model as loaded.
        data: Its dataset (``synthetic``: no training).
        device: Where to train.
        seed: Seed of the head, the data order and training.
        cache_dir: Root of the cache; files go to ``cache_dir/baselines``.
        options: ``train_*`` overrides (see the module docstring).
    """
    config = text_train_config(options or {}, seed)
    module = build_text_module(loaded, data.num_classes, seed)
    facts = {"baseline.kind": loaded.text.kind, "baseline.dataset": data.name}
    no_train = (options or {}).get("train_max_steps") == "0"
    if data.train is None or data.holdout is None or no_train:
        reason = "train_max_steps=0" if no_train else f"dataset {data.name!r} has no training split"
        facts.update({"baseline.trained": "false", "baseline.cached": "false", "baseline.not_trained_reason": reason})
        logger.info("text baseline %s is used as loaded (%s)", loaded.name, reason)
        return PreparedBaseline(text_artifact(loaded, module, data.seq_len, _tags(loaded, facts)), facts, cached=False)
    key = _cache_key(loaded, data, config, device)
    path = entry_path(Path(cache_dir), "baselines", f"{loaded.name}-text", key)
    meta = _load(module, path)
    cached = meta is not None
    if meta is None:
        loss = language_model_loss if loaded.text.kind == "decoder" else classification_loss
        result = train_text_model(
            module, data.train, data.holdout, config, loss_fn=loss, device=device, description=f"train {loaded.name}"
        )
        meta = _meta(result)
        write_entry(module, meta, path)
    if meta["stop_reason"] == STOP_TIME_CAP:
        logger.warning(
            "text baseline %s stopped at the training time cap (step %d) before its holdout loss settled: quality "
            "numbers describe an under-trained model; delete %s to train again (train_max_seconds raises the cap)",
            loaded.name,
            int(meta["steps"]),
            path,
        )
    facts.update(
        {
            "baseline.trained": "true",
            "baseline.cached": str(cached).lower(),
            "baseline.train_s": f"{float(meta['seconds']):.2f}",
            "baseline.train_steps": str(int(meta["steps"])),
            "baseline.stop_reason": str(meta["stop_reason"]),
            "baseline.holdout_loss": f"{float(meta['best_holdout_loss']):.4f}",
            "baseline.cache_key": key,
        }
    )
    return PreparedBaseline(text_artifact(loaded, module, data.seq_len, _tags(loaded, facts)), facts, cached=cached)


def _tags(loaded: LoadedTextModel, facts: dict[str, str]) -> dict[str, str]:
    return {"variant.recipe": "baseline", "baseline.weights": loaded.weights, **loaded.tags, **facts}


def _meta(result: TextTrainResult) -> dict[str, Any]:
    return {
        "steps": result.steps,
        "seconds": result.seconds,
        "stop_reason": result.stop_reason,
        "best_step": result.best_step,
        "best_holdout_loss": result.best_holdout_loss,
        "curve": result.curve,
    }


def _cache_key(loaded: LoadedTextModel, data: TextDataset, config: TextTrainConfig, device: str) -> str:
    import transformers

    parts = {
        "version": CACHE_VERSION,
        **model_identity(loaded),
        "dataset": data.name,
        "tokenizer": data.tokenizer,
        "sizes": [len(split) for split in (data.train, data.holdout, data.val) if split is not None],  # type: ignore[arg-type]
        "seq_len": data.seq_len,
        "classes": data.num_classes,
        "train": config.to_dict(),
        "device": device.split(":", maxsplit=1)[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    return digest(parts)


def _load(module: nn.Module, path: Path) -> dict[str, Any] | None:
    meta = load_into(module, path, "text baseline")
    if meta is not None:
        logger.info("loaded the trained text baseline from the cache: %s", path)
    return meta
