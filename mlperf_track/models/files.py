"""Models stored in local files: TorchScript, torch.export programs and full pickled models.

The format is read from the archive's contents, not trusted from the suffix: ``.pt`` is used for all three.

- TorchScript (``torch.jit.save``; ``.pt``, ``.ts``, ``.jit``): loaded with ``torch.jit.load``, which can run
  code from the file, so only with ``--trust-pickle`` (see :mod:`mlperf_track.models.safety`).
- torch.export (``torch.export.save``; ``.pt2``, or any suffix): ``torch.export.load(path).module()``, after a
  check that no record is an unsafe pickle (such an archive needs ``--trust-pickle``). Such a module cannot
  switch to eval mode (torch refuses ``.eval()``); it runs as it was exported.
- A full model pickled with ``torch.save(model)`` (``.pt``, ``.pth``): loaded with the unsafe pickle loader,
  only with ``--trust-pickle``. A bare state_dict is refused with a hint to pass it as ``weights=``.
"""

from __future__ import annotations

import hashlib
import logging
import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mlperf_track.errors import ConfigError, ModelLoadError
from mlperf_track.models.base import LoadedModel, ModelSource
from mlperf_track.models.heads import classifier_out_features
from mlperf_track.models.safety import require_trust, unsafe_export_record
from mlperf_track.models.weights import apply_weights, check_weights_path, load_state, one_line, read_weights_file

logger = logging.getLogger(__name__)
_CHUNK = 1 << 20


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes (the key of a cache entry derived from that file)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


#: File suffixes this source claims (lower case).
MODEL_FILE_SUFFIXES = (".pt", ".pt2", ".ts", ".jit", ".pth")
_PREFIX = "file:"
_ALLOWED = "an existing TorchScript (.pt/.ts), torch.export (.pt2) or pickled-model (.pt/.pth) file"


def sniff_format(path: Path) -> str:
    """Return ``"export"``, ``"torchscript"`` or ``"pickle"`` from the file's zip entries.

    Hand-written because torch offers no format probe; the entry names are those ``torch.export.save``
    (``archive_format``) and ``torch.jit.save`` (``constants.pkl``, ``code/``) write.
    """
    if not zipfile.is_zipfile(path):
        return "pickle"
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    if any(name.endswith("/archive_format") or name == "archive_format" for name in names):
        return "export"
    if any(name.endswith("/constants.pkl") or "/code/" in name for name in names):
        return "torchscript"
    return "pickle"


@dataclass
class _Loaded:
    module: nn.Module
    image_size: int | None = None
    num_classes: int | None = None


def _load_torchscript(path: Path) -> _Loaded:
    require_trust(path, "a TorchScript archive (a program torch warns may run arbitrary code)")
    with warnings.catch_warnings():
        # torch 2.14 marks torch.jit.load deprecated; loading a user's TorchScript file is still supported.
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.* is deprecated", category=FutureWarning)
        module = torch.jit.load(str(path), map_location="cpu")
    return _Loaded(module.eval())


def _export_output_classes(program: torch.export.ExportedProgram) -> int | None:
    """Last dimension of the program's first output (its class count), from the graph's metadata."""
    for node in program.graph.nodes:
        if node.op == "output" and node.args and node.args[0]:
            value = getattr(node.args[0][0], "meta", {}).get("val")
            if isinstance(value, torch.Tensor) and value.dim() == 2:
                return int(value.shape[-1])
    return None


def _load_export(path: Path) -> _Loaded:
    record = unsafe_export_record(path)
    if record is not None:
        require_trust(path, "a torch.export archive with records that run code when read", f"record {record}")
    program = torch.export.load(str(path))
    image_size = None
    example = program.example_inputs
    if example is not None and example[0] and isinstance(example[0][0], torch.Tensor):
        # The program was traced at this resolution; its shapes are static unless exported as dynamic.
        image_size = int(example[0][0].shape[-1])
    return _Loaded(program.module(), image_size, _export_output_classes(program))


def _load_pickle(path: Path) -> _Loaded:
    loaded = read_weights_file(path)
    if not isinstance(loaded, nn.Module):
        raise ModelLoadError(
            f"{path} holds a state_dict, not a model: pass it as weights with the architecture as the model "
            f"(e.g. --model resnet18 --weights {path})"
        )
    return _Loaded(loaded.eval())


_LOADERS = {"torchscript": _load_torchscript, "export": _load_export, "pickle": _load_pickle}


class FileSource(ModelSource):
    """A model file on the local disk (``model.pt``, ``model.pt2``, ``file:/abs/path``)."""

    name = "file"

    def matches(self, ref: str) -> bool:
        """Whether ``ref`` starts with ``file:`` or ends with a model-file suffix (the file may be missing)."""
        return ref.startswith(_PREFIX) or Path(ref).suffix.lower() in MODEL_FILE_SUFFIXES

    def load(self, ref: str, *, weights: str | None = None) -> LoadedModel:
        """Load the file, then apply ``weights`` (a state_dict) when given.

        Raises:
            ConfigError: The model file or the weights file does not exist.
            ModelLoadError: The file cannot be loaded as a model.
        """
        start = time.perf_counter()
        path = Path(ref.removeprefix(_PREFIX)).expanduser()
        if not path.is_file():
            raise ConfigError("model", str(path), _ALLOWED)
        weights_path = check_weights_path(weights) if weights is not None else None
        kind = sniff_format(path)
        try:
            loaded = _LOADERS[kind](path)
        except ModelLoadError:  # UnsafeFileError included
            raise
        except Exception as error:
            raise ModelLoadError(f"cannot load {path} as a {kind} model: {one_line(error)}") from error
        module = loaded.module
        origin = f"file:{path}"
        if weights_path is not None:
            if kind == "pickle":
                module = apply_weights(module, weights_path)
            else:
                state = read_weights_file(weights_path)
                if isinstance(state, nn.Module):
                    raise ModelLoadError(f"{weights_path} holds a full model; weights for {path} must be a state_dict")
                load_state(module, state, weights_path)
            origin = f"file:{weights_path}"
        logger.info("loaded %s model from %s", kind, path)
        return LoadedModel(
            module=module,
            name=path.stem,
            source=self.name,
            load_s=time.perf_counter() - start,
            weights=origin,
            num_classes=loaded.num_classes or classifier_out_features(module),
            default_image_size=loaded.image_size,
            tags={"model.format": kind, "model.path": str(path.resolve())},
        )
