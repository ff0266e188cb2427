"""Helpers shared by the runtime members: option checks, artifact pins, synthetic inputs, batching, caching.

Private to :mod:`mlperf_track.runtimes`; nothing here imports an optional dependency.
"""

from __future__ import annotations

import importlib
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import torch

from mlperf_track.errors import ConfigError, MissingDependencyError, UnsupportedError
from mlperf_track.runtimes.base import ARTIFACT_PRECISIONS, keeps_own_form
from mlperf_track.spec import check_choice

__all__ = ["ARTIFACT_PRECISIONS", "keeps_own_form"]  # re-exported for the members

if TYPE_CHECKING:
    from mlperf_track.models.artifact import ModelArtifact
    from mlperf_track.runtimes.base import PrepareRequest

#: Precisions computed in a float dtype (:func:`mlperf_track.engine.precision.dtype_for` gives it).
FLOAT_PRECISIONS = ("fp32", "tf32", "fp16", "bf16")


def import_optional(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the pip ``extra``."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingDependencyError(module.split(".", maxsplit=1)[0], extra, purpose) from error


def missing_reason(module: str, extra: str, purpose: str) -> str | None:
    """``None`` when ``module`` imports, else the :class:`MissingDependencyError` message."""
    try:
        import_optional(module, extra, purpose)
    except MissingDependencyError as error:
        return str(error)
    return None


def option(request: PrepareRequest, key: str, allowed: Sequence[str], default: str) -> str:
    """Return ``request.options[key]`` (or ``default``), checked against ``allowed``."""
    value = str(request.options.get(key, default))
    return check_choice(f"option {key}", value, allowed)


def int_option(options: Mapping[str, str], key: str, default: int) -> int:
    """Return ``options[key]`` as a positive integer (or ``default``)."""
    raw = options.get(key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"option {key}", raw, "a positive integer") from None
    if value <= 0:
        raise ConfigError(f"option {key}", raw, "a positive integer")
    return value


def check_artifact(runtime: str, artifact: ModelArtifact, precision: str, device: str | None = None) -> None:
    """Raise :class:`UnsupportedError` when the artifact's pins forbid running it as asked.

    An artifact fixed to a precision (a quantized model) runs only in that precision; one that needs a
    runtime runs only there, one that needs a device only there; ``int8``/``fp8`` need an artifact that is
    already quantized.
    """
    if device is not None and artifact.device is not None and artifact.device != device:
        raise UnsupportedError(
            "device", device, [artifact.device], hint=f"the artifact {artifact.name!r} must stay on {artifact.device}"
        )
    if artifact.runtime is not None and artifact.runtime != runtime:
        raise UnsupportedError(
            "runtime", runtime, [artifact.runtime], hint=f"the artifact {artifact.name!r} needs that runtime"
        )
    if artifact.precision is not None and artifact.precision != precision:
        raise UnsupportedError(
            "precision", precision, [artifact.precision], hint=f"the artifact {artifact.name!r} is fixed to it"
        )
    if precision in ARTIFACT_PRECISIONS and artifact.precision != precision:
        raise UnsupportedError(
            "precision",
            precision,
            FLOAT_PRECISIONS,
            hint=f"{precision} needs a quantized artifact (a quantized variant), {artifact.name!r} is not one",
        )


def check_batch_sizes(batch_sizes: Sequence[int]) -> tuple[int, ...]:
    """Return the batch sizes if they are a non-empty sequence of positive integers."""
    if not batch_sizes or any(isinstance(b, bool) or not isinstance(b, int) or b <= 0 for b in batch_sizes):
        raise ConfigError("batch_sizes", batch_sizes, "a non-empty list of positive integers")
    return tuple(batch_sizes)


def synthetic_batch(
    batch_size: int,
    input_shape: tuple[int, ...],
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    vocab_size: int | None = None,
) -> torch.Tensor:
    """A reproducible CPU batch of shape ``(batch_size, *input_shape)``: standard-normal floats in ``dtype``, or,
    with ``vocab_size``, uniformly drawn int64 token ids below it (``dtype`` is then ignored)."""
    generator = torch.Generator().manual_seed(seed)
    if vocab_size is not None:
        return torch.randint(0, vocab_size, (batch_size, *input_shape), generator=generator, dtype=torch.int64)
    return torch.randn((batch_size, *input_shape), generator=generator).to(dtype)


def vocab_of(artifact: ModelArtifact) -> int | None:
    """The vocabulary size synthetic token ids are drawn from, or ``None`` for an image model."""
    return artifact.tokens.vocab_size if artifact.tokens is not None else None


def chunked_predict(
    run: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, chunk: int, pad_to: int | None = None
) -> torch.Tensor:
    """Run ``images`` in chunks of at most ``chunk`` samples and concatenate float32 CPU outputs.

    With ``pad_to``, a chunk smaller than ``pad_to`` is zero-padded up to it (for runtimes prepared for fixed
    shapes) and the padding's outputs are dropped. Padding is harmless in eval mode: samples are independent.
    """
    outputs = []
    for start in range(0, images.shape[0], chunk):
        part = images[start : start + chunk]
        count = part.shape[0]
        if pad_to is not None and count < pad_to:
            padding = part.new_zeros((pad_to - count, *part.shape[1:]))
            part = torch.cat([part, padding])
        outputs.append(run(part)[:count].detach().to("cpu", torch.float32))
    return torch.cat(outputs) if outputs else images.new_zeros((0,))


class WorkDir:
    """Where a runtime writes exports and engines: ``request.cache_dir``, or a temporary directory.

    Files are kept in per-kind subdirectories (``onnx/``, ``tensorrt/``), so runtimes share ONNX exports.
    A temporary directory is deleted by :meth:`cleanup`; a cache directory is kept.
    """

    def __init__(self, cache_dir: Path | None, runtime: str) -> None:
        self._temporary = cache_dir is None
        self.root = Path(tempfile.mkdtemp(prefix=f"mlperf_track-{runtime}-")) if cache_dir is None else Path(cache_dir)

    def sub(self, name: str) -> Path:
        """The subdirectory ``name``, created if needed."""
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def cleanup(self) -> None:
        """Delete the directory when it is a temporary one."""
        if self._temporary:
            shutil.rmtree(self.root, ignore_errors=True)
