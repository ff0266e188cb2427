"""Hugging Face transformers models: ``hf:PATH`` (a local model folder) and ``hf-config:NAME`` (a named config).

Nothing is downloaded. ``hf:PATH`` reads a folder written by ``save_pretrained`` (``config.json`` plus
weights) with ``local_files_only=True`` and ``HF_HUB_OFFLINE=1``; ``hf-config:NAME`` builds one of
:mod:`~mlperf_track.models.transformers_configs`' architectures with a seeded random initialisation, recorded
as ``weights="random"`` and the tag ``model.init``. Decoders (an architecture ending in ``ForCausalLM`` or
``LMHeadModel``) load with their language-model head; every other model loads as its base encoder, to which
the baseline gives a classification head for the task. Encoder-decoder models (T5, BART) are refused.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from torch import nn

from mlperf_track.errors import ConfigError, MissingDependencyError, ModelLoadError
from mlperf_track.models.base import ModelSource
from mlperf_track.models.text import LoadedTextModel, TextModelInfo, linearize_conv1d
from mlperf_track.models.transformers_configs import DECODER, ENCODER, NAMED_CONFIGS, named_config_names
from mlperf_track.models.weights import apply_weights, check_weights_path, one_line, seeded_init
from mlperf_track.spec import check_choice

logger = logging.getLogger(__name__)

HF_PREFIX = "hf:"
HF_CONFIG_PREFIX = "hf-config:"
_FOLDER_ALLOWED = "hf:<a local folder with a transformers config.json and weights, as save_pretrained writes>"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt")
_DECODER_SUFFIXES = ("ForCausalLM", "LMHeadModel")


def require_transformers() -> Any:
    """Import ``transformers`` or raise :class:`MissingDependencyError` naming the extra."""
    try:
        import transformers
    except ImportError as error:
        raise MissingDependencyError("transformers", "transformers", "transformer models (hf:, hf-config:)") from error
    return transformers


@contextlib.contextmanager
def offline_hub() -> Iterator[None]:
    """Set ``HF_HUB_OFFLINE=1`` for the block (transformers must never reach the Hub), then restore it."""
    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = previous


def max_positions(config: Any) -> int:
    """The longest sequence a config's position embeddings allow."""
    for attribute in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, attribute, None)
        if isinstance(value, int) and value > 0:
            return value
    raise ModelLoadError(f"cannot tell the maximum sequence length of a {type(config).__name__}")


def model_kind(config: Any) -> str:
    """``decoder`` for a causal LM architecture, else ``encoder``; encoder-decoder models are refused."""
    if getattr(config, "is_encoder_decoder", False):
        raise ConfigError(
            "model",
            getattr(config, "model_type", "?"),
            "an encoder (BERT-like) or a decoder-only model (GPT/Llama-like)",
            hint="encoder-decoder models are not supported",
        )
    architectures = getattr(config, "architectures", None) or []
    return DECODER if any(name.endswith(_DECODER_SUFFIXES) for name in architectures) else ENCODER


def _finish(module: nn.Module, kind: str, config: Any) -> tuple[nn.Module, dict[str, str]]:
    module = module.float().eval()
    replaced = linearize_conv1d(module)
    tags = {"model.kind": kind, "model.family": str(getattr(config, "model_type", "unknown"))}
    if replaced:
        tags["model.conv1d_as_linear"] = str(replaced)
    return module, tags


def _check_loading(path: Path, info: dict[str, Any]) -> None:
    """Refuse weights whose shapes do not fit (transformers would re-initialise them with only a log line)."""
    mismatched = [str(item[0]) if isinstance(item, tuple) else str(item) for item in info.get("mismatched_keys") or []]
    if mismatched:
        shown = ", ".join(mismatched[:3]) + (", ..." if len(mismatched) > 3 else "")
        raise ModelLoadError(f"the weights in {path} do not fit its config: {len(mismatched)} tensors ({shown})")


class HfConfigSource(ModelSource):
    """``hf-config:NAME``: a named architecture with random weights (or ``weights=`` a state_dict file)."""

    name = "hf-config"

    def matches(self, ref: str) -> bool:
        """Whether ``ref`` starts with ``hf-config:``."""
        return ref.startswith(HF_CONFIG_PREFIX)

    def known_names(self) -> list[str]:
        """``hf-config:bert-base``, ``hf-config:gpt2-tiny``, ..."""
        return [HF_CONFIG_PREFIX + name for name in named_config_names()]

    def load(self, ref: str, *, weights: str | None = None) -> LoadedTextModel:
        """Build the named model (seeded), then load ``weights`` into it when given.

        Raises:
            ConfigError: Unknown name (with close matches) or missing weights file.
            ModelLoadError: The weights do not fit the architecture.
        """
        start = time.perf_counter()
        name = check_choice("model", ref.removeprefix(HF_CONFIG_PREFIX), named_config_names())
        named = NAMED_CONFIGS[name]
        weights_path = check_weights_path(weights) if weights is not None else None
        transformers = require_transformers()
        config = named.build()
        with seeded_init(), offline_hub():
            builder = transformers.AutoModelForCausalLM if named.kind == DECODER else transformers.AutoModel
            module, tags = _finish(builder.from_config(config), named.kind, config)
        origin = "random"
        tags["model.init"] = "random (seeded in-code config; no pretrained weights)"
        if weights_path is not None:
            module = apply_weights(module, weights_path)
            origin = f"file:{weights_path}"
            tags["model.init"] = f"weights from {weights_path}"
        tags["model.config"] = named.description
        return LoadedTextModel(
            module=module,
            name=name,
            source=self.name,
            load_s=time.perf_counter() - start,
            weights=origin,
            tags=tags,
            text=TextModelInfo(named.kind, int(config.vocab_size), max_positions(config), named.family),
        )


class HfFolderSource(ModelSource):
    """``hf:PATH``: a model folder on the local disk (``save_pretrained`` layout)."""

    name = "hf"

    def matches(self, ref: str) -> bool:
        """Whether ``ref`` starts with ``hf:`` (the folder may be missing: loading says so)."""
        return ref.startswith(HF_PREFIX)

    def load(self, ref: str, *, weights: str | None = None) -> LoadedTextModel:
        """Read the folder's config and weights (offline); its tokenizer is used when it has one.

        Raises:
            ConfigError: The path is not a folder with a ``config.json``; ``weights`` was given.
            ModelLoadError: The config or the weights cannot be read.
        """
        start = time.perf_counter()
        path = Path(ref.removeprefix(HF_PREFIX)).expanduser()
        if not (path.is_dir() and (path / "config.json").is_file()):
            raise ConfigError("model", ref, _FOLDER_ALLOWED)
        if weights is not None:
            raise ConfigError("weights", weights, "nothing for an hf: folder (its weights are in the folder)")
        transformers = require_transformers()
        with offline_hub():
            try:
                config = transformers.AutoConfig.from_pretrained(str(path), local_files_only=True)
            except Exception as error:
                raise ModelLoadError(f"cannot read the transformers config in {path}: {one_line(error)}") from error
            kind = model_kind(config)
            builder = transformers.AutoModelForCausalLM if kind == DECODER else transformers.AutoModel
            try:
                loaded, info = builder.from_pretrained(
                    str(path), local_files_only=True, dtype="float32", output_loading_info=True
                )
            except Exception as error:
                raise ModelLoadError(f"cannot load the model in {path}: {one_line(error)}") from error
        _check_loading(path, info)
        module, tags = _finish(loaded, kind, config)
        if info.get("missing_keys"):
            tags["model.randomly_initialised_keys"] = str(len(info["missing_keys"]))
        has_tokenizer = any((path / name).is_file() for name in _TOKENIZER_FILES)
        tags["model.path"] = str(path.resolve())
        tags["model.tokenizer"] = "the folder's" if has_tokenizer else "corpus BPE (the folder has none)"
        logger.info("loaded %s %s from %s", kind, tags["model.family"], path)
        return LoadedTextModel(
            module=module,
            name=path.name,
            source=self.name,
            load_s=time.perf_counter() - start,
            weights=f"hf:{path.resolve()}",
            tags=tags,
            text=TextModelInfo(
                kind,
                int(config.vocab_size),
                max_positions(config),
                str(getattr(config, "model_type", "unknown")),
                tokenizer_path=str(path.resolve()) if has_tokenizer else None,
            ),
        )
