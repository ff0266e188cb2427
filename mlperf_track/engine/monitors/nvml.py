"""Lazy access to NVML (package ``nvidia-ml-py``, extra ``gpu``) for the GPU monitors and the GPU facts.

``pynvml`` is imported on first use, never at module import, and only after a cheap probe says an NVIDIA driver
is present (:func:`nvidia_driver_present`), so a machine without one pays nothing. NVML never creates a CUDA
context: it talks to the driver, which is why the run-context provider can use it in users' unrelated scripts.

:func:`open_nvml_device` maps a CUDA device to its NVML handle by the device's own UUID, ``GPU-...`` for a whole
GPU and ``MIG-...`` for a MIG instance, so ``CUDA_VISIBLE_DEVICES`` reordering or MIG slicing cannot pick the
wrong device. There is no fallback to the index: a device NVML does not know by its UUID gets no NVML metrics,
with a note. :class:`NvmlDevice` wraps the few calls the monitors need; tests replace it with a fake.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from pathlib import Path
from typing import Any, Protocol

logger = logging.getLogger(__name__)

#: Files whose presence means an NVIDIA kernel driver is loaded (Linux, including containers and WSL).
DRIVER_PROBES = (
    Path("/proc/driver/nvidia/version"),
    Path("/dev/nvidiactl"),
    Path("/usr/lib/wsl/lib/libnvidia-ml.so.1"),
)


class NvmlUnavailableError(Exception):
    """NVML cannot be used here; the message says why (used as the monitors' note)."""


class GpuCounters(Protocol):
    """The NVML readings the GPU monitors use (:class:`NvmlDevice` or a test fake)."""

    def total_energy_mj(self) -> int:
        """Energy used by the whole GPU since the driver loaded, in millijoules."""
        ...

    def power_mw(self) -> int:
        """Current power draw of the whole GPU, in milliwatts."""
        ...

    def utilization_pct(self) -> float:
        """Percent of the last sample period in which a kernel was running."""
        ...

    def process_memory_bytes(self, pid: int) -> int | None:
        """GPU memory used by process ``pid``, or ``None`` when NVML does not list it."""
        ...

    def used_memory_bytes(self) -> int:
        """Memory in use on the device (every process), in bytes."""
        ...


class NvmlDevice:
    """One GPU (or MIG instance) seen through pynvml."""

    def __init__(self, pynvml: Any, handle: Any) -> None:
        self.pynvml = pynvml
        self.handle = handle

    def total_energy_mj(self) -> int:
        """``nvmlDeviceGetTotalEnergyConsumption`` (Volta and newer; not on MIG instances)."""
        return int(self.pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))

    def power_mw(self) -> int:
        """``nvmlDeviceGetPowerUsage``."""
        return int(self.pynvml.nvmlDeviceGetPowerUsage(self.handle))

    def utilization_pct(self) -> float:
        """``nvmlDeviceGetUtilizationRates(...).gpu``."""
        return float(self.pynvml.nvmlDeviceGetUtilizationRates(self.handle).gpu)

    def process_memory_bytes(self, pid: int) -> int | None:
        """``usedGpuMemory`` of ``pid`` in ``nvmlDeviceGetComputeRunningProcesses``."""
        for process in self.pynvml.nvmlDeviceGetComputeRunningProcesses(self.handle):
            if process.pid == pid:
                used = process.usedGpuMemory
                return int(used) if used is not None else None
        return None

    def used_memory_bytes(self) -> int:
        """``nvmlDeviceGetMemoryInfo(...).used``."""
        return int(self.pynvml.nvmlDeviceGetMemoryInfo(self.handle).used)


def nvidia_driver_present() -> bool:
    """Whether an NVIDIA driver seems to be loaded (a file check; never imports pynvml or CUDA)."""
    if not sys.platform.startswith("linux"):
        return True  # no cheap probe elsewhere: let NVML say
    return any(probe.exists() for probe in DRIVER_PROBES)


def nvml_error_types() -> tuple[type[BaseException], ...]:
    """The exception types an NVML call may raise (``pynvml.NVMLError`` when importable)."""
    try:
        import pynvml
    except ImportError:
        return (OSError,)
    return (pynvml.NVMLError, OSError)


@functools.cache
def _init_nvml() -> Any:
    if not nvidia_driver_present():
        raise NvmlUnavailableError("no NVIDIA driver is loaded on this machine")
    try:
        import pynvml
    except ImportError:
        raise NvmlUnavailableError(
            "pynvml is not installed: pip install 'mlperf-track[gpu]' (package nvidia-ml-py)"
        ) from None
    try:
        pynvml.nvmlInit()  # initialised once per process and left open: nvmlShutdown is reference-counted
    except pynvml.NVMLError as error:
        raise NvmlUnavailableError(f"NVML could not be initialised ({error}); is the NVIDIA driver loaded?") from None
    return pynvml


def nvml_uuid_candidates(uuid: str) -> list[str]:
    """The NVML UUID strings a CUDA device UUID may stand for: itself when prefixed, else ``GPU-`` and ``MIG-``.

    torch reports ``cudaDeviceProp.uuid`` without a prefix; under MIG it is the MIG instance's UUID, which NVML
    knows as ``MIG-<uuid>`` (the ``GPU-<uuid>`` form would not match, or would match the parent GPU).
    """
    uuid = uuid.strip()
    if not uuid:
        return []
    if uuid.startswith(("GPU-", "MIG-")):
        return [uuid]
    return [f"GPU-{uuid}", f"MIG-{uuid}"]


def handle_by_uuid(pynvml: Any, uuid: str) -> Any:
    """The NVML handle of the device whose UUID is ``uuid`` (prefixed or not).

    Raises:
        NvmlUnavailableError: NVML knows no device with that UUID (never falls back to an index).
    """
    errors: list[str] = []
    for candidate in nvml_uuid_candidates(uuid):
        try:
            return pynvml.nvmlDeviceGetHandleByUUID(candidate)
        except pynvml.NVMLError as error:
            errors.append(f"{candidate}: {error}")
    detail = "; ".join(errors) or "the device reports no UUID"
    raise NvmlUnavailableError(f"NVML knows no device with the CUDA device's UUID ({detail})")


@functools.cache
def _open(device_index: int) -> NvmlDevice:
    pynvml = _init_nvml()
    import torch

    uuid = str(getattr(torch.cuda.get_device_properties(device_index), "uuid", ""))
    return NvmlDevice(pynvml, handle_by_uuid(pynvml, uuid))


def open_nvml_device(device_index: int | None = None) -> GpuCounters:
    """The NVML view of CUDA device ``device_index`` (default: torch's current device).

    Raises:
        NvmlUnavailableError: When pynvml, the driver or a GPU is missing, or NVML does not know the device's
            UUID (the message says which).
    """
    import torch

    if not torch.cuda.is_available():
        raise NvmlUnavailableError("no CUDA GPU is visible to torch")
    return _open(torch.cuda.current_device() if device_index is None else device_index)


def driver_version() -> str | None:
    """The NVIDIA driver version from NVML, or ``None`` when NVML is unavailable."""
    errors: tuple[type[BaseException], ...] = (NvmlUnavailableError, *nvml_error_types())
    try:
        pynvml = _init_nvml()
        return str(pynvml.nvmlSystemGetDriverVersion())
    except errors as error:
        logger.debug("no driver version from NVML: %s", error)
        return None


def visible_handles(pynvml: Any, visible: str | None) -> list[Any]:
    """NVML handles of the devices CUDA would expose under ``CUDA_VISIBLE_DEVICES=visible``, in CUDA's order.

    ``None`` means every device; entries are indices, ``GPU-``/``MIG-`` UUIDs or unique UUID prefixes, and, as
    in CUDA, the list ends at the first entry that names no device.
    """
    count = int(pynvml.nvmlDeviceGetCount())
    if visible is None:
        return [pynvml.nvmlDeviceGetHandleByIndex(index) for index in range(count)]
    handles = []
    for token in (item.strip() for item in visible.split(",")):
        handle = _handle_for_token(pynvml, token, count)
        if handle is None:
            break
        handles.append(handle)
    return handles


def _handle_for_token(pynvml: Any, token: str, count: int) -> Any | None:
    if token.lstrip("-").isdigit():
        index = int(token)
        return pynvml.nvmlDeviceGetHandleByIndex(index) if 0 <= index < count else None
    if not token.startswith(("GPU-", "MIG-")):
        return None
    try:
        return pynvml.nvmlDeviceGetHandleByUUID(token)
    except pynvml.NVMLError:
        pass
    matches = []
    for index in range(count):  # CUDA accepts a unique prefix of a GPU UUID
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        if str(pynvml.nvmlDeviceGetUUID(handle)).startswith(token):
            matches.append(handle)
    return matches[0] if len(matches) == 1 else None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def gpu_facts() -> dict[str, str]:
    """GPU facts from NVML alone (no torch, no CUDA context), for the devices ``CUDA_VISIBLE_DEVICES`` exposes.

    Keys: ``hw.gpu`` (the first visible device's name, ``none`` without one), ``hw.gpu_count``,
    ``hw.gpu_memory_mb`` (MiB), ``hw.gpu_capability``, ``hw.gpu_driver``. Without NVML only ``hw.gpu`` is given,
    and only when no driver is present (``none``); otherwise nothing is claimed.
    """
    try:
        pynvml = _init_nvml()
    except NvmlUnavailableError as error:
        logger.debug("no GPU facts from NVML: %s", error)
        return {"hw.gpu": "none"} if not nvidia_driver_present() else {}
    try:
        handles = visible_handles(pynvml, os.environ.get("CUDA_VISIBLE_DEVICES"))
    except pynvml.NVMLError as error:
        logger.debug("NVML could not list the devices: %s", error)
        return {}
    if not handles:
        return {"hw.gpu": "none", "hw.gpu_count": "0"}
    first = handles[0]
    readers = {
        "hw.gpu": lambda: _text(pynvml.nvmlDeviceGetName(first)),
        "hw.gpu_memory_mb": lambda: str(int(pynvml.nvmlDeviceGetMemoryInfo(first).total) // 1024**2),
        "hw.gpu_capability": lambda: "{}.{}".format(*pynvml.nvmlDeviceGetCudaComputeCapability(first)),
        "hw.gpu_driver": lambda: _text(pynvml.nvmlSystemGetDriverVersion()),
    }
    facts = {"hw.gpu_count": str(len(handles))}
    for key, read in readers.items():
        try:
            facts[key] = read()
        except pynvml.NVMLError as error:  # a MIG instance or an old driver may not answer every query
            logger.debug("NVML gave no %s: %s", key, error)
    return facts
