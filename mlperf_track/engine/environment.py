"""Hardware and software facts recorded as tags on every result; computed once per process."""

from __future__ import annotations

import functools
import os
import platform
import sys
from pathlib import Path

import torch

import mlperf_track


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`)."""
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith(("model name", "Model", "cpu model")) and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _gpu_tags() -> dict[str, str]:
    if not torch.cuda.is_available():
        return {"hw.gpu": "none"}
    from mlperf_track.engine.monitors.nvml import driver_version

    index = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    tags = {
        "hw.gpu": props.name,
        "hw.gpu_count": str(torch.cuda.device_count()),
        "hw.gpu_memory_mb": str(props.total_memory // 1024**2),
        "hw.gpu_capability": f"{props.major}.{props.minor}",
    }
    driver = driver_version()
    if driver:
        tags["hw.gpu_driver"] = driver
    return tags


def environment_tags() -> dict[str, str]:
    """Tags describing this machine and software stack.

    Keys: ``hw.cpu``, ``hw.cpu_cores`` (logical), ``hw.gpu`` (``none`` without one), ``hw.gpu_driver`` (when
    NVML is available), ``hw.gpu_count``, ``hw.gpu_memory_mb``, ``hw.gpu_capability``, ``sw.torch``, ``sw.cuda``
    (``none`` for a CPU build), ``sw.cudnn``, ``sw.python``, ``sw.mlperf_track``, ``sw.platform``.
    The facts are gathered once per process; every call returns a fresh copy.
    """
    return dict(_environment_tags())


@functools.cache
def _environment_tags() -> dict[str, str]:
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    tags = {
        "hw.cpu": cpu_model(),
        "hw.cpu_cores": str(os.cpu_count() or 0),
        **_gpu_tags(),
        "sw.torch": torch.__version__,
        "sw.cuda": torch.version.cuda or "none",
        "sw.python": platform.python_version(),
        "sw.mlperf_track": mlperf_track.__version__,
        "sw.platform": platform.platform(),
    }
    if cudnn is not None and torch.cuda.is_available():
        tags["sw.cudnn"] = str(cudnn)
    if sys.platform == "linux" and hasattr(os, "sched_getaffinity"):
        tags["hw.cpu_affinity"] = str(len(os.sched_getaffinity(0)))
    return tags
