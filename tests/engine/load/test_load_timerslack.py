"""The calling thread's timer slack is lowered for the block and restored after it."""

from __future__ import annotations

import ctypes
import sys

import pytest

from mlperf_track.engine.load.timerslack import PRECISE_SLACK_NS, precise_timers


def _slack() -> int:
    return int(ctypes.CDLL(None).prctl(30, 0, 0, 0, 0))  # PR_GET_TIMERSLACK


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl timer slack is Linux's")
def test_lowered_inside_and_restored_after() -> None:
    before = _slack()
    with precise_timers() as precise:
        assert precise and _slack() == PRECISE_SLACK_NS
    assert _slack() == before


def test_an_error_inside_still_restores() -> None:
    before = _slack() if sys.platform.startswith("linux") else None
    with pytest.raises(RuntimeError), precise_timers():
        raise RuntimeError("boom")
    if before is not None:
        assert _slack() == before
