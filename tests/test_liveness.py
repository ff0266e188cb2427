"""Process identities: alive, exited, reaped, zombie, reused pid, rebooted, another host."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time

from mlperf_track.liveness import ProcessIdentity, boot_id, is_alive, start_ticks


def _exited_child() -> ProcessIdentity:
    """The identity of a child that ran and was reaped (its pid is free again)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.2)"])
    identity = dataclasses.replace(ProcessIdentity.current(), pid=child.pid, start=start_ticks(child.pid))
    child.wait()
    return identity


def test_this_process_is_alive_and_round_trips() -> None:
    me = ProcessIdentity.current()
    assert me.pid == os.getpid() and me.start is not None and me.boot == boot_id()
    assert is_alive(me) is True
    assert ProcessIdentity.from_dict(me.to_dict()) == me


def test_an_exited_process_is_gone() -> None:
    assert is_alive(_exited_child()) is False


def test_a_zombie_is_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    identity = dataclasses.replace(ProcessIdentity.current(), pid=child.pid, start=start_ticks(child.pid))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and is_alive(identity):  # not reaped yet: a zombie once it exits
        time.sleep(0.05)
    try:
        assert is_alive(identity) is False
    finally:
        child.wait()


def test_a_reused_pid_is_not_the_same_process() -> None:
    me = ProcessIdentity.current()
    assert me.start is not None
    assert is_alive(dataclasses.replace(me, start=me.start - 1)) is False


def test_another_boot_is_gone_and_another_host_cannot_be_told() -> None:
    me = ProcessIdentity.current()
    assert is_alive(dataclasses.replace(me, boot="another-boot")) is False
    assert is_alive(dataclasses.replace(me, host=me.host + "-elsewhere")) is None


def test_incomplete_identities_are_refused() -> None:
    assert ProcessIdentity.from_dict({"host": "h"}) is None
    assert ProcessIdentity.from_dict({"pid": "x"}) is None
    assert ProcessIdentity.from_dict({"pid": "12", "start": ""}) == ProcessIdentity("", "", 12, None)
