"""An interruption lets go of what the interrupted calls held before the cleanup that follows it writes anything.

A ``KeyboardInterrupt`` (Ctrl-C, or a SIGTERM that :mod:`mlperf_track.cli.signals` turns into one) lands between two
bytecodes, so it can land inside a tracking-store read: SQLAlchemy has run a ``SELECT`` on a pooled SQLite
connection and not yet read it to the end. The interrupted frames live on in the exception's traceback, and with
them the open cursor, whose statement keeps SQLite's SHARED lock on the database file (the session's ``rollback``
on close does not reset a statement outside a transaction). Every write the cleanup then makes in the same process
(ending the runs KILLED, the parent's report) needs the EXCLUSIVE lock, waits for that SHARED lock, and fails after
MLflow's 20 s busy timeout with "database is locked", so the runs stay RUNNING. Seen in CI on a loaded 2-core
machine: a pipeline interrupted after its first case left its parent RUNNING; reproduced in a few lines (an MLflow
session interrupted after ``fetchone``: the next ``set_tag`` failed after 20.1 s, and took 6 ms once the frames were
released).

:func:`release_unwound_frames` drops the locals of every frame the exception has already left (the frames still
running, the handler's own among them, are kept) and collects reference cycles, so such a cursor is closed before
the first cleanup write. The traceback keeps its file names and line numbers; only the locals go.

This module imports nothing from the package.
"""

from __future__ import annotations

import gc
import traceback


def release_unwound_frames(error: BaseException) -> None:
    """Clear the locals of the frames ``error`` unwound, and collect cycles, so what they held is released.

    Call it first where an interruption (or any error) is caught and then written down (to a tracking store, a
    study storage): an interrupted read's open cursor would otherwise keep its database locked against those writes.
    """
    traceback.clear_frames(error.__traceback__)
    gc.collect()
