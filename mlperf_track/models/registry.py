"""The one place model sources are registered and model references resolved.

Resolution order: each registered source is asked ``matches(ref)`` in order and the first that says yes loads
the model. Built-in order: ``mlflow`` (``models:/``, ``runs:/``, a folder with an ``MLmodel`` file),
``torchvision`` (names), ``tiny`` (``tinycnn``), ``hf-config`` (``hf-config:NAME``), ``hf`` (``hf:PATH``),
``file`` (model files). Sources registered with ``first=True``
(the default) go in front of them. Registering imports nothing; the built-ins (and torch) are imported on the
first lookup.

The ``mlflow`` source lives in the tracking layer (loading those URIs is MLflow's business) and this layer may
not import it, so the registry knows it by module path and imports it only when a reference with one of its
URI schemes is loaded (:class:`DeferredSource`): ``models:/`` works for every caller, whether or not
:mod:`mlperf_track.tracking` was imported first.

Example::

    loaded = load_model("resnet18", weights="resnet18.pth")
    loaded.module(torch.randn(1, 3, loaded.default_image_size, loaded.default_image_size))
"""

from __future__ import annotations

import importlib
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


class DeferredSource(ModelSource):
    """A source of a higher layer, named by ``module:Class`` and imported on the first load it serves.

    ``matches`` is answered here, from URI prefixes and an optional marker file in a directory, without
    importing anything.
    """

    name = "mlflow"
    #: ``module:Class`` of the real source.
    target = "mlperf_track.tracking.model_source:MlflowModelSource"
    #: Reference prefixes the real source claims.
    prefixes: tuple[str, ...] = ("models:/", "runs:/")
    #: A file whose presence makes a directory a reference of this source (``None``: none).
    marker_file: str | None = "MLmodel"

    def matches(self, ref: str) -> bool:
        """A reference with one of :attr:`prefixes`, or a directory holding :attr:`marker_file`."""
        if ref.startswith(self.prefixes):
            return True
        if self.marker_file is None:
            return False
        try:
            path = Path(ref).expanduser()
            return path.is_dir() and (path / self.marker_file).is_file()
        except OSError:
            return False

    def load(self, ref: str, *, weights: str | None = None) -> LoadedModel:
        """Import the real source and let it load ``ref``."""
        module_name, _, class_name = self.target.partition(":")
        source: ModelSource = getattr(importlib.import_module(module_name), class_name)()
        return source.load(ref, weights=weights)


def _builtin_sources() -> list[ModelSource]:
    # Imported on first use: registering a source (which tracking does while ``import mlflow`` runs) must not
    # import torch.
    with _lock:
        if not _builtins:
            from mlperf_track.models.files import FileSource
            from mlperf_track.models.tiny import TinySource
            from mlperf_track.models.torchvision_zoo import TorchvisionSource
            from mlperf_track.models.transformers_source import HfConfigSource, HfFolderSource

            _builtins.extend(
                [DeferredSource(), TorchvisionSource(), TinySource(), HfConfigSource(), HfFolderSource(), FileSource()]
            )
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
        "a torchvision classification model name, tinycnn, a model file (.pt/.pt2/.ts), a models:/ or runs:/ URI, "
        "hf:<model folder> or hf-config:<name>",
        hint,
    )


def load_model(ref: str, *, weights: str | None = None, trust_pickle: bool = False) -> LoadedModel:
    """Load a model by name, file or URI.

    Args:
        ref: ``resnet18``, ``tinycnn``, ``model.pt``, ``model.pt2``, ``models:/name/1`` (when registered) ...
        weights: A weights file (state_dict or full-model checkpoint) to load into the model.
        trust_pickle: Allow files that run code when loaded (full-model pickles, TorchScript, ``.pt2`` archives
            with pickled records or code in a symbolic shape, MLflow models saved as pickles); see
            :mod:`mlperf_track.models.safety`.
            Such loads are logged as warnings and tagged ``model.unsafe_load``.

    Returns:
        The loaded model, on CPU, in eval mode, with ``load_s`` measured by its source.

    Raises:
        ConfigError: Unknown reference, missing model file or missing weights file.
        UnsafeFileError: The model or weights file can run code when loaded and ``trust_pickle`` is false.
        ModelLoadError: The model or its weights could not be loaded.
    """
    from mlperf_track.models.safety import UNSAFE_LOAD_TAG
    from mlperf_track.models.safety import trust_pickle as trusting

    source = resolve_source(ref)
    with trusting(trust_pickle) as unsafe:
        loaded = source.load(ref.strip(), weights=weights)
    if unsafe:
        loaded.tags[UNSAFE_LOAD_TAG] = ",".join(unsafe)
    logger.info(
        "loaded model %s from %s (weights: %s) in %.2f s", loaded.name, source.name, loaded.weights, loaded.load_s
    )
    return loaded
