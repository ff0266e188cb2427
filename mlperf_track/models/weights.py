"""Reading weight files and applying them to a freshly built model (shared by every model source)."""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from mlperf_track.errors import ConfigError, ModelLoadError
from mlperf_track.models.heads import classifier_out_features, find_classifier, replace_classifier
from mlperf_track.models.safety import refused_global, require_trust

logger = logging.getLogger(__name__)

#: Seed used for random initialisation, so that two loads of the same model without weights agree.
INIT_SEED = 0

StateDict = Mapping[str, torch.Tensor]


def one_line(error: BaseException) -> str:
    """The first non-empty line of an exception's message (torch's messages run over many lines)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def check_weights_path(weights: str) -> Path:
    """Return ``weights`` as a path if it is an existing file, else raise ``ConfigError("weights", ...)``."""
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ConfigError("weights", str(path), "an existing file")
    return path


@contextmanager
def seeded_init(seed: int = INIT_SEED) -> Iterator[None]:
    """Build modules under a fixed CPU seed without disturbing the caller's random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _unwrap(obj: object, path: Path) -> StateDict | nn.Module:
    if isinstance(obj, nn.Module):
        return obj
    if isinstance(obj, Mapping):
        # Training checkpoints often nest the weights: {"state_dict": ...} (Lightning) or {"model": ...}.
        for key in ("state_dict", "model", "model_state_dict"):
            inner = obj.get(key)
            if isinstance(inner, nn.Module | Mapping):
                return _unwrap(inner, path)
        if obj and all(isinstance(value, torch.Tensor) for value in obj.values()):
            # DataParallel/DistributedDataParallel prefix every key with "module.".
            if all(str(key).startswith("module.") for key in obj):
                return {str(key).removeprefix("module."): value for key, value in obj.items()}
            return {str(key): value for key, value in obj.items()}
    raise ModelLoadError(f"{path} holds neither a state_dict nor a model (found {type(obj).__name__})")


def read_weights_file(path: Path) -> StateDict | nn.Module:
    """Load a state_dict (``torch.save(model.state_dict())``) or a full model (``torch.save(model)``).

    The safe ``weights_only`` loader reads state_dicts and training checkpoints. A file it refuses (a full-model
    pickle, or a crafted file whose unpickling would call something else) needs the unsafe loader, which runs
    code from the file: it is refused unless the load trusts pickles (see :mod:`mlperf_track.models.safety`).

    Raises:
        UnsafeFileError: The file needs the unsafe loader and ``--trust-pickle`` was not given.
        ModelLoadError: The file is not a torch checkpoint.
    """
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as refused:
        require_trust(path, "not a plain state_dict but a pickle", refused_global(refused))
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as error:
            raise ModelLoadError(f"cannot load {path} as a torch checkpoint: {one_line(error)}") from error
    except Exception as error:
        raise ModelLoadError(f"cannot load {path} as a torch checkpoint: {one_line(error)}") from error
    return _unwrap(obj, path)


def _match_head(module: nn.Module, state: StateDict) -> None:
    """Resize the head when the weights come from a model fine-tuned on another number of classes."""
    found = find_classifier(module)
    if found is None:
        return
    weight = state.get(f"{found[0]}.weight")
    if weight is not None and weight.dim() >= 1 and weight.shape[0] != classifier_out_features(module):
        replace_classifier(module, int(weight.shape[0]))


def _examples(keys: set[str]) -> str:
    shown = ", ".join(sorted(keys)[:3])
    return f"{len(keys)} ({shown}{', ...' if len(keys) > 3 else ''})"


def load_state(module: nn.Module, state: StateDict, path: Path) -> None:
    """Load ``state`` into ``module`` strictly, resizing the head first when needed.

    Raises:
        ModelLoadError: The keys or shapes do not match the architecture (names a few of each).
    """
    _match_head(module, state)
    expected, given = set(module.state_dict()), set(state)
    problems = []
    if expected - given:
        problems.append(f"missing keys {_examples(expected - given)}")
    if given - expected:
        problems.append(f"unexpected keys {_examples(given - expected)}")
    if not problems:
        try:
            module.load_state_dict(state, strict=True)
            return
        except RuntimeError as error:
            problems = [line.strip() for line in str(error).splitlines() if "size mismatch" in line][:2]
            problems = problems or [one_line(error)]
    raise ModelLoadError(f"weights in {path} do not fit {type(module).__name__}: {'; '.join(problems)}")


def apply_weights(module: nn.Module, path: Path) -> nn.Module:
    """Return ``module`` with the weights from ``path``, or the model stored in ``path`` if it holds one.

    Raises:
        ModelLoadError: The file cannot be read or does not fit the architecture.
    """
    loaded = read_weights_file(path)
    if isinstance(loaded, nn.Module):
        logger.info("%s holds a full model (%s); using it as is", path, type(loaded).__name__)
        return loaded
    load_state(module, loaded, path)
    return module
