"""The one place model sources are registered and model references resolved.

Resolution order: each registered source is asked ``matches(ref)`` in order and the first that says yes loads
the model. Built-in order: ``torchvision`` (names), ``tiny`` (``tinycnn``), ``file`` (model files). Sources
registered with ``first=True`` (the default) go in front, so the MLflow source of the tracking layer
(``models:/``, ``runs:/``) is asked before the built-ins. Registering imports nothing; the built-ins (and torch)
are imported on the first lookup.

Example::

    loaded = load_model("resnet18", weights="resnet18.pth")
    loaded.module(torch.randn(1, 3, loaded.default_image_size, loaded.default_image_size))
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from mlperf_track.errors import ConfigError
from mlperf_track.models.base import LoadedModel, ModelSource
from mlperf_track.spec import closest_matches

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_front: list[ModelSource] = []  # registered with first=True, most recent first
_back: list[ModelSource] = []  # registered with first=False, in registration order
_builtins: list[ModelSource] = []


def _builtin_sources() -> list[ModelSource]:
    # Imported on first use: registering a source (which tracking does while ``import mlflow`` runs) must not
    # import torch.
    with _lock:
        if not _builtins:
            from mlperf_track.models.files import FileSource
            from mlperf_track.models.tiny import TinySource
            from mlperf_track.models.torchvision_zoo import TorchvisionSource

            _builtins.extend([TorchvisionSource(), TinySource(), FileSource()])
        return list(_builtins)


def register_model_source(source: ModelSource, *, first: bool = True) -> None:
    """Add a model source (cheap: imports nothing).

    A source with the same ``name`` as a registered or built-in one replaces it (so registering twice is
    harmless).

    Args:
        source: The source.
        first: Ask it before every source registered so far and the built-ins (default), else after them.
    """
    with _lock:
        _front[:] = [existing for existing in _front if existing.name != source.name]
        _back[:] = [existing for existing in _back if existing.name != source.name]
        if first:
            _front.insert(0, source)
        else:
            _back.append(source)


def model_sources() -> list[ModelSource]:
    """The sources in resolution order: registered first, then the built-ins, then those added with first=False."""
    builtins = _builtin_sources()
    with _lock:
        registered = {source.name for source in (*_front, *_back)}
        return [*_front, *(source for source in builtins if source.name not in registered), *_back]


def model_names() -> list[str]:
    """Every model name the sources offer (torchvision names, ``tinycnn``, ...), sorted."""
    names: set[str] = set()
    for source in model_sources():
        names.update(source.known_names())
    return sorted(names)


def resolve_source(ref: str) -> ModelSource:
    """The first source whose ``matches(ref)`` is true.

    Raises:
        ConfigError: No source understands ``ref``; the message lists the closest model names.
    """
    ref = ref.strip()
    for source in model_sources():
        if source.matches(ref):
            return source
    matches = closest_matches(ref, model_names())
    if matches:
        hint = f"did you mean {', '.join(matches)}?"
    elif Path(ref).suffix:
        hint = "model files must end in .pt, .pt2, .ts, .jit or .pth"
    else:
        hint = "model_names() lists the names"
    raise ConfigError(
        "model",
        ref,
        "a torchvision classification model name, tinycnn, a model file (.pt/.pt2/.ts) or a models:/ or runs:/ URI",
        hint,
    )


def load_model(ref: str, *, weights: str | None = None) -> LoadedModel:
    """Load a model by name, file or URI.

    Args:
        ref: ``resnet18``, ``tinycnn``, ``model.pt``, ``model.pt2``, ``models:/name/1`` (when registered) ...
        weights: A weights file (state_dict or full-model checkpoint) to load into the model.

    Returns:
        The loaded model, on CPU, in eval mode, with ``load_s`` measured by its source.

    Raises:
        ConfigError: Unknown reference, missing model file or missing weights file.
        ModelLoadError: The model or its weights could not be loaded.
    """
    source = resolve_source(ref)
    loaded = source.load(ref.strip(), weights=weights)
    logger.info(
        "loaded model %s from %s (weights: %s) in %.2f s", loaded.name, source.name, loaded.weights, loaded.load_s
    )
    return loaded
