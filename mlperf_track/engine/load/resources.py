"""What a deployment gets, not what the benchmark machine has: CPU cores, threads, memory, GPU memory.

:func:`constrained` applies the in-process limits for the duration of a run and restores them after:

- ``cpu_cores``: the affinity of every thread of the process (``sched_setaffinity`` applies to one thread
  on Linux; the threads PyTorch's pools already started would otherwise escape), inherited by new threads;
- ``num_threads``: ``torch.set_num_threads``;
- ``gpu_memory_fraction``: ``torch.cuda.set_per_process_memory_fraction`` (the caching allocator refuses
  allocations past it).

``memory_limit_mb`` needs a process of its own: see :mod:`mlperf_track.engine.load.isolated`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

from mlperf_track.errors import ConfigError, DeviceError
from mlperf_track.spec import check_positive_float, check_positive_int

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResourceLimits:
    """Resources one deployment may use.

    Attributes:
        cpu_cores: CPU core numbers the process may run on, or ``None`` (leave affinity alone).
        num_threads: PyTorch intra-op threads, or ``None`` (torch's default).
        memory_limit_mb: Memory cap in MiB, enforced on a child process, or ``None``.
        gpu_memory_fraction: Fraction of the GPU's memory the process may allocate, or ``None``.
    """

    cpu_cores: tuple[int, ...] | None = None
    num_threads: int | None = None
    memory_limit_mb: float | None = None
    gpu_memory_fraction: float | None = None

    def __post_init__(self) -> None:
        if self.cpu_cores is not None:
            if not self.cpu_cores:
                raise ConfigError("cpu_cores", "", "a non-empty list of CPU core numbers")
            for core in self.cpu_cores:
                if isinstance(core, bool) or not isinstance(core, int) or core < 0:
                    raise ConfigError("cpu_cores", core, "CPU core numbers >= 0")
        if self.num_threads is not None:
            check_positive_int("num_threads", self.num_threads)
        if self.memory_limit_mb is not None:
            check_positive_float("memory_limit_mb", self.memory_limit_mb)
        fraction = self.gpu_memory_fraction
        if fraction is not None and (isinstance(fraction, bool) or not isinstance(fraction, (int, float))):
            raise ConfigError("gpu_memory_fraction", fraction, "a fraction in (0, 1]")
        if fraction is not None and not 0 < fraction <= 1:
            raise ConfigError("gpu_memory_fraction", fraction, "a fraction in (0, 1]")

    @property
    def any(self) -> bool:
        """Whether any limit is set."""
        return any(value is not None for value in self.__dict__.values())

    def check(self, device: str) -> None:
        """Refuse, before anything runs, limits this machine cannot apply.

        Raises:
            ConfigError: A core that this process may not use.
            DeviceError: A GPU memory fraction without a CUDA device.
        """
        if self.cpu_cores is not None:
            available = sorted(os.sched_getaffinity(0))
            missing = [core for core in self.cpu_cores if core not in available]
            if missing:
                raise ConfigError("cpu_cores", ",".join(map(str, missing)), f"cores of this machine: {available}")
        if self.gpu_memory_fraction is not None:
            import torch

            if device != "cuda" or not torch.cuda.is_available():
                raise DeviceError(
                    f"gpu_memory_fraction={self.gpu_memory_fraction:g} needs a CUDA device, and this run is on "
                    f"{device if device != 'cuda' else 'a machine without one'}: drop the option or use --device cuda"
                )

    def params(self) -> dict[str, str]:
        """The limits that are set, as MLflow params (``limit.`` prefix)."""
        values = {
            "limit.cpu_cores": ",".join(map(str, self.cpu_cores)) if self.cpu_cores else None,
            "limit.num_threads": self.num_threads,
            "limit.memory_limit_mb": self.memory_limit_mb,
            "limit.gpu_memory_fraction": self.gpu_memory_fraction,
        }
        return {key: f"{value:g}" if isinstance(value, float) else str(value) for key, value in values.items() if value}


def _thread_ids() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def set_process_affinity(cores: set[int]) -> None:
    """Pin every current thread of this process to ``cores`` (new threads inherit the creator's)."""
    for thread_id in _thread_ids():
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.sched_setaffinity(thread_id, cores)


@contextlib.contextmanager
def constrained(limits: ResourceLimits, device: str = "cpu") -> Iterator[dict[str, str]]:
    """Apply the in-process limits for the block; yield them as tags; restore the previous settings.

    Raises:
        ConfigError, DeviceError: See :meth:`ResourceLimits.check`.
    """
    limits.check(device)
    tags: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        if limits.cpu_cores is not None:
            previous = set(os.sched_getaffinity(0))
            set_process_affinity(set(limits.cpu_cores))
            stack.callback(set_process_affinity, previous)
            tags["load.cpu_cores"] = ",".join(map(str, sorted(limits.cpu_cores)))
        if limits.num_threads is not None:
            import torch

            threads = torch.get_num_threads()
            torch.set_num_threads(limits.num_threads)
            stack.callback(torch.set_num_threads, threads)
            tags["load.num_threads"] = str(limits.num_threads)
        if limits.gpu_memory_fraction is not None:
            import torch

            torch.cuda.set_per_process_memory_fraction(limits.gpu_memory_fraction)
            stack.callback(torch.cuda.set_per_process_memory_fraction, 1.0)
            tags["load.gpu_memory_fraction"] = f"{limits.gpu_memory_fraction:g}"
        yield tags
