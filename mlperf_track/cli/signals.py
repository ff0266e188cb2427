"""Ctrl-C and SIGTERM stop a command once, and the runs it opened are closed before it exits.

What happens to ``mlflow run . ...`` on Ctrl-C (read in ``mlflow/projects/__init__.py``, ``_wait_for``, and
``mlflow/projects/backend/local.py``, ``_run_entry_point``, MLflow 3.17): ``mlflow run`` starts the entry point
with ``subprocess.Popen(["bash", "-c", command])`` in its own process group, so the terminal's SIGINT reaches both
processes. Ours raises KeyboardInterrupt and starts closing its runs (KILLED). ``mlflow run`` catches its own
KeyboardInterrupt, calls ``SubmittedRun.cancel()``, which sends SIGTERM to our process and waits for it to exit,
then calls ``_maybe_set_run_terminated(run, "FAILED")``, which marks the run FAILED *unless it is already
terminated*. Before this module, that SIGTERM arrived while we were closing the runs and, turned into a second
KeyboardInterrupt, cut the cleanup short: the process died with its runs still RUNNING, and ``mlflow run`` marked
its parent FAILED.

:func:`interrupt_once` makes the first SIGINT or SIGTERM a KeyboardInterrupt and ignores the next two (the runs
are being closed; each is logged), so our process ends its runs KILLED and exits 130, and ``mlflow run`` finds
them terminated and leaves them alone. A fourth signal quits at once (``os._exit(130)``) for a cleanup that
hangs; whatever it leaves RUNNING is closed as KILLED by the next start's stale-run cleanup
(:mod:`mlperf_track.tracking.stale`). ``kill -9`` cannot be caught: the same cleanup closes those runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

logger = logging.getLogger(__name__)

#: Signals that stop a command.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: The signal that quits at once, without closing the runs (the fourth).
FORCE_AT = 4
EXIT_CODE = 130


@contextlib.contextmanager
def interrupt_once() -> Iterator[None]:
    """Within the block: the first SIGINT/SIGTERM raises KeyboardInterrupt, the next two are ignored, the fourth
    exits at once with code 130. Does nothing outside the main thread (signals are only delivered there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        name = signal.Signals(signum).name
        if len(received) == 1:
            raise KeyboardInterrupt(name)
        if len(received) >= FORCE_AT:
            logger.warning("%s again: quitting without closing the runs (the next start closes them)", name)
            os._exit(EXIT_CODE)
        logger.warning(
            "%s: already stopping, closing the runs first (%d more to quit at once)", name, FORCE_AT - len(received)
        )

    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, action in previous.items():
            signal.signal(signum, action)
