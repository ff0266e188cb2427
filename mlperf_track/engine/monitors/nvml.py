"""Lazy access to NVML (package ``nvidia-ml-py``, extra ``gpu``) for the GPU monitors.

``pynvml`` is imported on first use, never at module import. :func:`open_nvml_device` maps torch's current
CUDA device to its NVML handle by UUID (so ``CUDA_VISIBLE_DEVICES`` reordering cannot pick the wrong GPU)
and wraps the few calls the monitors need in :class:`NvmlDevice`, which tests replace with a fake.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Protocol

logger = logging.getLogger(__name__)


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


class NvmlDevice:
    """One GPU seen through pynvml."""

    def __init__(self, pynvml: Any, handle: Any) -> None:
        self.pynvml = pynvml
        self.handle = handle

    def total_energy_mj(self) -> int:
        """``nvmlDeviceGetTotalEnergyConsumption`` (Volta and newer)."""
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


def nvml_error_types() -> tuple[type[BaseException], ...]:
    """The exception types an NVML call may raise (``pynvml.NVMLError`` when importable)."""
    try:
        import pynvml
    except ImportError:
        return (OSError,)
    return (pynvml.NVMLError, OSError)


@functools.cache
def _init_nvml() -> Any:
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


@functools.cache
def _open(device_index: int) -> NvmlDevice:
    pynvml = _init_nvml()
    import torch

    uuid = str(getattr(torch.cuda.get_device_properties(device_index), "uuid", ""))
    if uuid:
        try:
            name = uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"
            return NvmlDevice(pynvml, pynvml.nvmlDeviceGetHandleByUUID(name))
        except pynvml.NVMLError as error:
            logger.debug("NVML does not know UUID %s (%s); falling back to the device index", uuid, error)
    try:
        return NvmlDevice(pynvml, pynvml.nvmlDeviceGetHandleByIndex(device_index))
    except pynvml.NVMLError as error:
        raise NvmlUnavailableError(f"NVML has no handle for CUDA device {device_index} ({error})") from None


def open_nvml_device(device_index: int | None = None) -> GpuCounters:
    """The NVML view of CUDA device ``device_index`` (default: torch's current device).

    Raises:
        NvmlUnavailableError: When pynvml, the driver or a GPU is missing (the message says which).
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
