"""Sleeps and timed waits that end on time: the calling thread's timer slack, lowered while the load runs.

Linux lets the kernel fire a thread's timers up to its *timer slack* late (50 us by default) to batch wake-ups.
For a load generator that is a systematic error: every scheduled issue and every dynamic-batching deadline
lands about 70 us late instead of about 20 us (measured on the 2-core CI machine), and the delay is charged to
queueing. ``prctl(PR_SET_TIMERSLACK)`` sets it per thread; nothing in the standard library wraps it, hence this
small ctypes call. Elsewhere (or when the call fails) the timers are left as they are.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import sys
from collections.abc import Iterator

logger = logging.getLogger(__name__)

_PR_SET_TIMERSLACK = 29
_PR_GET_TIMERSLACK = 30
#: The slack asked for, in nanoseconds (the kernel's minimum useful value).
PRECISE_SLACK_NS = 1


def _prctl() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


@contextlib.contextmanager
def precise_timers() -> Iterator[bool]:
    """Lower this thread's timer slack for the block, then restore it; yields whether timers are precise."""
    prctl = _prctl()
    previous = int(prctl(_PR_GET_TIMERSLACK, 0, 0, 0, 0)) if prctl is not None else -1
    if prctl is None or previous < 0:
        yield False
        return
    if previous <= PRECISE_SLACK_NS:
        yield True
        return
    lowered = prctl(_PR_SET_TIMERSLACK, PRECISE_SLACK_NS, 0, 0, 0) == 0
    if not lowered:
        logger.debug("could not lower the timer slack (%d ns): sleeps may end up to that late", previous)
    try:
        yield lowered
    finally:
        if lowered:
            prctl(_PR_SET_TIMERSLACK, previous, 0, 0, 0)
