"""Injected contention: other tenants spinning CPUs and holding memory while the deployment serves.

``cpu:N`` starts N processes that spin; ``memory:MB`` starts one process that allocates MB MiB and keeps
touching every page (so it stays resident and competes for caches and bandwidth). Processes, not threads:
spinning Python threads would fight this process for its GIL rather than for cores, and measure the wrong
thing. Each helper exits when this process is gone (it watches its parent), and :class:`BackgroundLoad`
stops exactly the processes it started.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import TracebackType

from mlperf_track.errors import ConfigError, MeasurementError

logger = logging.getLogger(__name__)

_ALLOWED = "cpu:N and/or memory:MB, comma-separated (e.g. cpu:2,memory:512)"

_CPU_SPIN = """
import os, sys
parent = int(sys.argv[1])
while os.getppid() == parent:
    for _ in range(200000):
        pass
"""

_MEMORY_HOG = """
import os, sys, time
parent, size = int(sys.argv[1]), int(sys.argv[2]) << 20
block = bytearray(size)
for offset in range(0, size, 4096):
    block[offset] = 1
print("ready", flush=True)
turn = 0
while os.getppid() == parent:
    turn = (turn + 1) % 251
    for offset in range(0, size, 4096):
        block[offset] = turn
    time.sleep(0.05)
"""


@dataclass(frozen=True)
class BackgroundLoad:
    """Contention to inject: ``cpu_workers`` spinning processes and ``memory_mb`` MiB held and touched.

    Use it as a context manager; it starts the helpers on entry and stops them on exit.
    """

    cpu_workers: int = 0
    memory_mb: int = 0
    _processes: list[subprocess.Popen[bytes]] = field(default_factory=list, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name, value in (("cpu", self.cpu_workers), ("memory", self.memory_mb)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError("--background-load", f"{name}:{value}", _ALLOWED)

    @classmethod
    def parse(cls, text: str | None) -> BackgroundLoad:
        """``"cpu:2,memory:512"`` -> ``BackgroundLoad(2, 512)``; empty or ``none`` -> no load."""
        values = {"cpu": 0, "memory": 0}
        if text is None or text.strip().lower() in ("", "none"):
            return cls()
        for item in text.split(","):
            kind, sep, amount = item.strip().partition(":")
            if not sep or kind not in values:
                raise ConfigError("--background-load", item.strip(), _ALLOWED)
            try:
                number = int(amount)
            except ValueError:
                raise ConfigError("--background-load", item.strip(), _ALLOWED) from None
            if number <= 0:
                raise ConfigError("--background-load", item.strip(), _ALLOWED, hint="amounts are positive")
            values[kind] = number
        return cls(values["cpu"], values["memory"])

    @property
    def active(self) -> bool:
        """Whether there is any load to inject."""
        return bool(self.cpu_workers or self.memory_mb)

    @property
    def pids(self) -> list[int]:
        """Process ids of the running helpers."""
        return [process.pid for process in self._processes if process.poll() is None]

    @property
    def spec(self) -> str:
        """The load as ``cpu:N,memory:MB`` (``none`` without load)."""
        parts = [f"cpu:{self.cpu_workers}"] * bool(self.cpu_workers) + [f"memory:{self.memory_mb}"] * bool(
            self.memory_mb
        )
        return ",".join(parts) or "none"

    def __enter__(self) -> BackgroundLoad:
        import os

        parent = str(os.getpid())
        try:
            if self.memory_mb:
                hog = subprocess.Popen(
                    [sys.executable, "-c", _MEMORY_HOG, parent, str(self.memory_mb)], stdout=subprocess.PIPE
                )
                self._processes.append(hog)
                self._wait_ready(hog)
            for _ in range(self.cpu_workers):
                self._processes.append(subprocess.Popen([sys.executable, "-c", _CPU_SPIN, parent]))
        except BaseException:
            self.stop()
            raise
        logger.info("background load %s started (pids %s)", self.spec, [p.pid for p in self._processes])
        return self

    def _wait_ready(self, process: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
        assert process.stdout is not None
        deadline = time.monotonic() + timeout_s
        import selectors

        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if selector.select(timeout=0.5):
                    if process.stdout.readline().strip() == b"ready":
                        return
                    break
                if process.poll() is not None:
                    break
        raise MeasurementError(
            f"the background memory load of {self.memory_mb} MiB did not start (exit code {process.poll()}): "
            "lower memory:MB"
        )

    def stop(self) -> None:
        """Stop every helper this object started (terminate, then kill after 5 s)."""
        for process in self._processes:
            if process.poll() is None:
                process.terminate()
        for process in self._processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
            if process.stdout is not None:
                process.stdout.close()
        self._processes.clear()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
