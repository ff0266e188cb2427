"""Run a load point in a child process under an enforced memory limit, and survive its death.

How the limit is enforced (recorded as the tag ``load.memory_limit.mechanism``):

- ``cgroup_v2``: where the unified hierarchy is mounted and this process's cgroup lets us create a child
  cgroup with the memory controller, the child process is moved into a new cgroup whose ``memory.max`` is
  the limit (the kernel's OOM killer ends it past the limit: what a container gets);
- ``rlimit_data``: otherwise the child sets ``RLIMIT_DATA`` on itself (Linux counts the heap and private
  anonymous mappings, which is where tensors live) before it loads the model, and an allocation past it
  fails. ``RLIMIT_AS`` would count the 3+ GiB of address space that importing torch maps, so a realistic
  limit would refuse the import.

The child builds its own model from ``job`` (a picklable callable, run under the ``spawn`` start method so no
lock or thread of this process is inherited). A child killed by the limit, or failing to allocate, becomes an
:class:`~mlperf_track.errors.OutOfMemoryError` naming the limit; the caller records it and goes on.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlperf_track import metrics as m
from mlperf_track.engine.load.result import LoadResult
from mlperf_track.errors import MeasurementError, OutOfMemoryError

logger = logging.getLogger(__name__)

CGROUP_V2 = "cgroup_v2"
RLIMIT_DATA = "rlimit_data"
CGROUP_ROOT = Path("/sys/fs/cgroup")
_counter = itertools.count()


def own_cgroup(root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")) -> Path | None:
    """This process's cgroup v2 directory, or ``None`` when the unified hierarchy is not in use."""
    if not (root / "cgroup.controllers").is_file():
        return None
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("0::"):
            return root / line[3:].lstrip("/")
    return None


def make_memory_cgroup(limit_mb: float, root: Path = CGROUP_ROOT, parent: Path | None = None) -> Path | None:
    """Create a child cgroup with ``memory.max`` set, or return ``None`` when cgroup v2 is not writable here."""
    parent = parent or own_cgroup(root)
    if parent is None or "memory" not in _read(parent / "cgroup.controllers").split():
        return None
    if "memory" not in _read(parent / "cgroup.subtree_control").split():
        try:
            (parent / "cgroup.subtree_control").write_text("+memory")
        except OSError:  # busy (processes in our cgroup) or read-only: not writable for us
            return None
    group = parent / f"mlperf_track_{os.getpid()}_{next(_counter)}"
    try:
        group.mkdir()
        (group / "memory.max").write_text(str(int(limit_mb * 2**20)))
        with contextlib.suppress(OSError):
            (group / "memory.swap.max").write_text("0")
    except OSError:
        remove_cgroup(group)
        return None
    return group


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def oom_kills(group: Path) -> int:
    """``oom_kill`` from the cgroup's ``memory.events`` (0 when unreadable)."""
    for line in _read(group / "memory.events").splitlines():
        name, _, value = line.partition(" ")
        if name == "oom_kill" and value.strip().isdigit():
            return int(value)
    return 0


def remove_cgroup(group: Path) -> None:
    """Remove a cgroup this module created (it must be empty of processes)."""
    with contextlib.suppress(OSError):
        group.rmdir()


def data_size_mb() -> float | None:
    """This process's ``VmData`` (what ``RLIMIT_DATA`` counts) in MiB, or ``None`` where unreadable."""
    for line in _read(Path("/proc/self/status")).splitlines():
        if line.startswith("VmData:"):
            return int(line.split()[1]) / 1024
    return None


def _child(connection: Any, job: Callable[[], LoadResult], limit_mb: float | None, mechanism: str) -> None:
    """The child process: wait for the go, limit itself if asked, run the job, send the outcome."""
    at_start = data_size_mb()
    try:
        connection.recv()  # the parent has moved us into the cgroup, if it uses one
        tags = {}
        if limit_mb is not None:
            tags = {m.LOAD_MEMORY_LIMIT_TAG: mechanism, "load.memory_limit_mb": f"{limit_mb:g}"}
            if mechanism == RLIMIT_DATA:
                import resource

                limit = int(limit_mb * 2**20)
                resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
                if at_start is not None:
                    tags["load.memory_limit.data_at_start_mb"] = f"{at_start:.0f}"
        result = job().with_tags(tags)
        connection.send(("ok", result.to_dict()))
    except BaseException as error:
        from mlperf_track.engine.device import is_out_of_memory

        oom = isinstance(error, MemoryError) or is_out_of_memory(error)
        text = str(error).splitlines()[0] if str(error) else ""
        if oom and at_start is not None and mechanism == RLIMIT_DATA:
            text += f" (the process held {at_start:.0f} MiB of data before the model was loaded)"
        connection.send(("error", type(error).__name__, text, oom))
    finally:
        connection.close()


def _describe_death(exitcode: int | None, limit_mb: float | None, mechanism: str, group: Path | None) -> str:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        detail = f"killed by {name}"
    else:
        detail = f"exited with code {exitcode} before reporting"
    if group is not None and oom_kills(group):
        detail += f" (the kernel's OOM killer: memory.max={limit_mb:g} MiB)"
    elif limit_mb is not None:
        detail += f" under a {limit_mb:g} MiB memory limit ({mechanism})"
    return detail


def run_isolated(
    job: Callable[[], LoadResult],
    *,
    memory_limit_mb: float | None = None,
    timeout_s: float = 3600.0,
    cgroup_root: Path = CGROUP_ROOT,
) -> LoadResult:
    """Run ``job`` in a spawned child process, under ``memory_limit_mb`` when given.

    Args:
        job: A picklable callable that builds the model and runs the load point in the child.
        memory_limit_mb: The child's memory limit in MiB, or ``None``.
        timeout_s: The child is killed after this long.
        cgroup_root: Where cgroup v2 is mounted.

    Returns:
        The child's :class:`LoadResult`, tagged with the mechanism that enforced the limit.

    Raises:
        OutOfMemoryError: The child ran out of memory under the limit, or was killed by it.
        MeasurementError: The child failed otherwise, died, or timed out.
    """
    group = make_memory_cgroup(memory_limit_mb, cgroup_root) if memory_limit_mb is not None else None
    mechanism = CGROUP_V2 if group is not None else RLIMIT_DATA
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=True)
    process = context.Process(target=_child, args=(sender, job, memory_limit_mb, mechanism), daemon=True)
    process.start()
    sender.close()
    try:
        if group is not None:
            (group / "cgroup.procs").write_text(str(process.pid))
        receiver.send("go")
        if not receiver.poll(timeout_s):
            raise MeasurementError(f"the isolated load point did not finish within {timeout_s:g} s")
        message = receiver.recv()
    except (EOFError, BrokenPipeError, ConnectionResetError):
        process.join(timeout=5)
        reason = _describe_death(process.exitcode, memory_limit_mb, mechanism, group)
        error_type = OutOfMemoryError if memory_limit_mb is not None else MeasurementError
        raise error_type(f"the load point's process was {reason}") from None
    finally:
        if process.is_alive():
            process.kill()
        process.join(timeout=5)
        receiver.close()
        if group is not None:
            remove_cgroup(group)
    if message[0] == "ok":
        return LoadResult.from_dict(message[1])
    _, name, text, oom = message
    if oom:
        raise OutOfMemoryError(
            f"out of memory under a {memory_limit_mb:g} MiB limit ({mechanism}): {name}: {text}"
            if memory_limit_mb is not None
            else f"out of memory: {name}: {text}"
        )
    raise MeasurementError(f"the isolated load point failed: {name}: {text}")
