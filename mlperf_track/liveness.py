"""Is the process that owns a run (or a work folder) still alive? Identities that survive pid reuse.

A process is named by its host, the kernel's boot id, its pid and its start time (field 22 of
``/proc/<pid>/stat``, clock ticks since boot). On the same host and boot, a process is alive when a process
with that pid exists *and* started at the same tick: a pid the kernel handed to another process since (pid reuse)
has a different start time. After a reboot (another boot id) every old process is gone. On another host nothing
can be said from here (:func:`is_alive` returns ``None``): the tracking layer falls back to heartbeats.

Hosts are compared by name and boot id together, so two containers that share a kernel (same boot id) but not a
pid namespace are told apart by their host names. This module imports nothing of the package (it sits beside
``spec`` and ``errors``), so the pipeline and the tracking layer can both use it.
"""

from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")
#: States of a process that has exited (zombie, dead).
_ENDED_STATES = frozenset({"Z", "X", "x"})


@functools.cache
def boot_id() -> str:
    """This kernel's boot id (``/proc/sys/kernel/random/boot_id``), or ``""`` where there is none."""
    try:
        return (_PROC / "sys" / "kernel" / "random" / "boot_id").read_text(encoding="ascii").strip()
    except OSError:
        return ""


def host_name() -> str:
    """This machine's host name."""
    return socket.gethostname()


def _stat(pid: int) -> tuple[str, int] | None:
    """The state letter and the start time (clock ticks since boot) of process ``pid``, or ``None``.

    The command name in ``/proc/<pid>/stat`` may hold spaces and parentheses, so fields are counted after the
    last ``)``: the state is field 3, the start time field 22.
    """
    try:
        text = (_PROC / str(pid) / "stat").read_text(encoding="ascii", errors="replace")
    except (OSError, ValueError):
        return None
    fields = text[text.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def start_ticks(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), or ``None`` when it does not exist (or no /proc)."""
    stat = _stat(pid)
    return stat[1] if stat is not None else None


@dataclass(frozen=True)
class ProcessIdentity:
    """A process, named so that a reused pid is not mistaken for it.

    Attributes:
        host: Host name.
        boot: Kernel boot id (``""`` where unknown).
        pid: Process id.
        start: Start time in clock ticks since boot (``None`` where unknown).
    """

    host: str
    boot: str
    pid: int
    start: int | None

    @classmethod
    def current(cls) -> ProcessIdentity:
        """This process."""
        pid = os.getpid()
        return cls(host_name(), boot_id(), pid, start_ticks(pid))

    def same_machine(self) -> bool:
        """Whether this identity is of a process on this host, in this boot."""
        return self.host == host_name() and bool(self.boot) and self.boot == boot_id()

    def to_dict(self) -> dict[str, str]:
        """Plain strings (for tags and JSON files)."""
        start = "" if self.start is None else str(self.start)
        return {"host": self.host, "boot": self.boot, "pid": str(self.pid), "start": start}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> ProcessIdentity | None:
        """The identity :meth:`to_dict` wrote, or ``None`` when it is incomplete."""
        try:
            pid = int(data["pid"])
        except (KeyError, TypeError, ValueError):
            return None
        start_text = str(data.get("start") or "")
        start = int(start_text) if start_text.isdigit() else None
        return cls(str(data.get("host") or ""), str(data.get("boot") or ""), pid, start)


def is_alive(identity: ProcessIdentity) -> bool | None:
    """Whether the process is still running: ``None`` when it runs on another host (cannot tell from here).

    On this host: a different boot id means the machine rebooted since (gone); otherwise the pid must exist with
    the recorded start time (a reused pid has another). Without a recorded start time, an existing pid counts as
    alive (the safe answer: a live run is never closed by mistake).
    """
    if identity.host != host_name():
        return None
    if identity.boot and boot_id() and identity.boot != boot_id():
        return False
    stat = _stat(identity.pid)
    if stat is None:
        return _pid_exists(identity.pid)
    state, started = stat
    if state in _ENDED_STATES:  # a zombie has exited; only its parent has not collected the status yet
        return False
    return identity.start is None or started == identity.start


def _pid_exists(pid: int) -> bool:
    """Whether a process with ``pid`` exists (where /proc gave no answer)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True
