"""Pinning the whole process to a set of CPUs while cases are measured (``PipelineConfig.pin_cores``).

``os.sched_setaffinity(0, ...)`` pins only the calling thread; torch's OpenMP workers and the monitors'
sampling thread would keep running anywhere. :func:`pinned` therefore sets the affinity of every thread of
the process (``/proc/self/task``), and restores each one's previous affinity afterwards; threads started in
between inherit the pinned set and get the process's original affinity back.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence

from mlperf_track.errors import ConfigError

logger = logging.getLogger(__name__)


def _thread_ids() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def check_cores(cores: Sequence[int], num_threads: int | None) -> None:
    """Refuse cores this process may not run on; warn when more threads than cores will compete.

    Raises:
        ConfigError: Pinning is not supported here, or a core is not available to this process.
    """
    if not hasattr(os, "sched_setaffinity"):
        raise ConfigError("pin_cores", ",".join(map(str, cores)), "nothing on this platform (Linux only)")
    allowed = sorted(os.sched_getaffinity(0))
    for core in cores:
        if core not in allowed:
            raise ConfigError("pin_cores", core, allowed, hint="the CPUs this process may run on")
    import torch

    threads = num_threads or torch.get_num_threads()
    if threads > len(set(cores)):
        logger.warning(
            "%d threads will share %d pinned core(s); pass num_threads=%d to avoid oversubscription",
            threads,
            len(set(cores)),
            len(set(cores)),
        )


@contextlib.contextmanager
def pinned(cores: Sequence[int] | None) -> Iterator[None]:
    """Pin every thread of the process to ``cores`` for the block (no-op for ``None``), then restore."""
    if cores is None:
        yield
        return
    original = os.sched_getaffinity(0)
    saved: dict[int, set[int]] = {}
    for tid in _thread_ids():
        with contextlib.suppress(OSError):  # a thread may end between listing and pinning
            saved[tid] = os.sched_getaffinity(tid)
            os.sched_setaffinity(tid, set(cores))
    logger.info("pinned %d threads to cores %s", len(saved), ",".join(map(str, cores)))
    try:
        yield
    finally:
        for tid in _thread_ids():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, saved.get(tid, original))


def affinity_of_all_threads() -> dict[int, set[int]]:
    """The affinity of every thread of the process, by thread id (for checks and tests)."""
    found = {}
    for tid in _thread_ids():
        with contextlib.suppress(OSError):
            found[tid] = os.sched_getaffinity(tid)
    return found
