"""Device resolution, synchronisation, memory release and out-of-memory detection."""

from __future__ import annotations

import gc
import logging

import torch

from mlperf_track.errors import DeviceError
from mlperf_track.errors import OutOfMemoryError as MlperfOutOfMemoryError
from mlperf_track.spec import DEVICES, check_choice

logger = logging.getLogger(__name__)

#: Substrings of error messages that mean an allocation failed (CUDA caching allocator, CPU allocator,
#: cuBLAS/cuDNN workspaces).
_OOM_MESSAGES = ("out of memory", "not enough memory", "cublas_status_alloc_failed", "cudnn_status_alloc_failed")


def is_cuda(device: str) -> bool:
    """Whether ``device`` names a CUDA device (``cuda`` or ``cuda:N``)."""
    return device == "cuda" or device.startswith("cuda:")


def resolve_device(device: str) -> str:
    """Resolve a user's device choice to ``cpu`` or ``cuda``.

    Args:
        device: ``auto``, ``cpu`` or ``cuda``.

    Returns:
        ``cuda`` for ``auto`` when a GPU is usable, else ``cpu``; other values unchanged.

    Raises:
        ConfigError: For an unknown device name.
        DeviceError: For ``cuda`` when no CUDA GPU is usable.
    """
    check_choice("device", device, DEVICES)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        built = torch.version.cuda
        why = (
            "this torch build has no CUDA support (install a CUDA wheel of torch)"
            if built is None
            else f"torch was built for CUDA {built} but sees no GPU (check the driver and CUDA_VISIBLE_DEVICES)"
        )
        raise DeviceError(f"--device cuda was requested but {why}; use --device cpu or auto")
    return device


def synchronize(device: str) -> None:
    """Wait until all queued work on ``device`` has finished (no-op on the CPU)."""
    if is_cuda(device):
        torch.cuda.synchronize()


def release_memory(device: str) -> None:
    """Free what can be freed: collect garbage and, on CUDA, return cached blocks to the driver."""
    gc.collect()
    if is_cuda(device) and torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` (or an error it was raised from) is an allocation failure on any device."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (torch.cuda.OutOfMemoryError, MemoryError, MlperfOutOfMemoryError)):
            return True
        if isinstance(current, RuntimeError) and any(text in str(current).lower() for text in _OOM_MESSAGES):
            return True
        current = current.__cause__ or current.__context__
    return False
