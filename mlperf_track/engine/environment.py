"""Hardware and software facts recorded as tags; computed once per process.

Two views:

* :func:`host_tags` never imports torch and never creates a CUDA context: the CPU from ``/proc``, the GPU from
  NVML (only when an NVIDIA driver is present and pynvml importable), the torch and CUDA versions read from
  torch's ``version.py`` file. It is what the MLflow run-context provider adds to every run of every script,
  so it must stay cheap and harmless.
* :func:`environment_tags` adds torch's own view (the current CUDA device, cuDNN) for measured results, where
  torch and CUDA are in use anyway.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import platform
import re
import sys
from pathlib import Path

import mlperf_track

_VERSION_LINE = re.compile(r"^(__version__|cuda)\s*(?::[^=]*)?=\s*['\"]([^'\"]*)['\"]", re.MULTILINE)


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux, else the machine type).

    Never :func:`platform.processor`, which runs ``uname -p`` in a subprocess on POSIX systems.
    """
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith(("model name", "Model", "cpu model")) and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine() or "unknown"


def platform_text() -> str:
    """``Linux-6.1.0-x86_64-with-glibc2.36``, like :func:`platform.platform` but without its ``uname -p``
    subprocess (it resolves the processor field)."""
    if not hasattr(os, "uname"):
        return platform.platform()  # Windows: no subprocess there
    uname = os.uname()
    text = f"{uname.sysname}-{uname.release}-{uname.machine}"
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        libc = ""
    if libc:
        text += "-with-" + libc.replace(" ", "")
    return text


def torch_versions() -> dict[str, str]:
    """``sw.torch`` and ``sw.cuda`` without importing torch (from ``torch/version.py``), or from torch if loaded."""
    loaded = sys.modules.get("torch")
    if loaded is not None and hasattr(loaded, "version"):
        return {"sw.torch": str(loaded.__version__), "sw.cuda": loaded.version.cuda or "none"}
    try:
        spec = importlib.util.find_spec("torch")  # a top-level package: finding it imports nothing
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return {"sw.torch": "not installed"}
    for location in spec.submodule_search_locations:
        try:
            text = (Path(location) / "version.py").read_text(encoding="utf-8")
        except OSError:
            continue
        found = dict(_VERSION_LINE.findall(text))
        tags = {"sw.torch": found["__version__"]} if "__version__" in found else {}
        if "__version__" in found:
            tags["sw.cuda"] = found.get("cuda") or "none"
        return tags
    return {}


def host_tags() -> dict[str, str]:
    """Facts gathered without torch or CUDA (a fresh copy of a per-process cache).

    Keys: ``hw.cpu``, ``hw.cpu_cores`` (logical), ``hw.cpu_affinity`` (cores this process may use, Linux),
    ``sw.python``, ``sw.platform``, ``sw.mlperf_track``, ``sw.torch``, ``sw.cuda`` (``none`` for a CPU build),
    and from NVML when a driver is present: ``hw.gpu``, ``hw.gpu_count``, ``hw.gpu_memory_mb``,
    ``hw.gpu_capability``, ``hw.gpu_driver`` (``hw.gpu`` is ``none`` on a machine without an NVIDIA driver).
    """
    return dict(_host_tags())


@functools.cache
def _host_tags() -> dict[str, str]:
    from mlperf_track.engine.monitors.nvml import gpu_facts

    tags = {
        "hw.cpu": cpu_model(),
        "hw.cpu_cores": str(os.cpu_count() or 0),
        "sw.python": platform.python_version(),
        "sw.mlperf_track": mlperf_track.__version__,
        "sw.platform": platform_text(),
        **torch_versions(),
        **gpu_facts(),
    }
    if hasattr(os, "sched_getaffinity"):
        tags["hw.cpu_affinity"] = str(len(os.sched_getaffinity(0)))
    return tags


def usable_cores() -> int:
    """Logical cores this process may run on (its CPU affinity where the OS has one, else every core)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _torch_gpu_tags() -> dict[str, str]:
    import torch

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
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    if cudnn is not None:
        tags["sw.cudnn"] = str(cudnn)
    return tags


def environment_tags() -> dict[str, str]:
    """Tags describing this machine and software stack as torch sees it (imports torch).

    The :func:`host_tags` keys, with the GPU facts taken from torch's current CUDA device and ``sw.cudnn`` on a
    GPU. The facts are gathered once per process; every call returns a fresh copy.
    """
    return dict(_environment_tags())


@functools.cache
def _environment_tags() -> dict[str, str]:
    import torch

    tags = {key: value for key, value in host_tags().items() if not key.startswith("hw.gpu")}
    tags.update({"sw.torch": torch.__version__, "sw.cuda": torch.version.cuda or "none", **_torch_gpu_tags()})
    return tags
