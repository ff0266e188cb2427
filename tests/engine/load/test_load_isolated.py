"""Memory limits in a child process (RLIMIT_DATA here; cgroup v2 where writable) and failures that come back."""

from __future__ import annotations

import functools
import os
import signal
from pathlib import Path

import pytest

from mlperf_track import metrics as m
from mlperf_track.engine.clock import FakeClock
from mlperf_track.engine.load.config import LoadConfig
from mlperf_track.engine.load.isolated import (
    CGROUP_V2,
    RLIMIT_DATA,
    make_memory_cgroup,
    oom_kills,
    own_cgroup,
    run_isolated,
)
from mlperf_track.engine.load.result import LoadResult
from mlperf_track.engine.load.run import run_load
from mlperf_track.engine.load.synthetic import SyntheticModel
from mlperf_track.errors import MeasurementError, OutOfMemoryError

pytestmark = pytest.mark.slow


def _job(allocate_mb: int = 0, crash: bool = False, fail: bool = False) -> LoadResult:
    """Runs in the child: optionally allocate, crash or fail, then a tiny simulated load point."""
    if allocate_mb:
        block = bytearray(allocate_mb * 2**20)
        block[::4096] = b"\x01" * len(block[::4096])
    if crash:
        os.kill(os.getpid(), signal.SIGKILL)
    if fail:
        raise RuntimeError("the model could not be loaded")
    clock = FakeClock()
    config = LoadConfig("single_stream", min_duration_s=0.0, min_query_count=5, early_stopping=False)
    return run_load(SyntheticModel(1.0, clock=clock), config, clock=clock, simulated=True, warmup_calls=0)


def test_a_point_runs_in_a_child_and_says_how_its_limit_was_enforced() -> None:
    result = run_isolated(functools.partial(_job), memory_limit_mb=4096)
    assert result.metrics[m.LOAD_COMPLETED] == 5
    assert result.tags[m.LOAD_MEMORY_LIMIT_TAG] in (CGROUP_V2, RLIMIT_DATA)
    assert result.tags["load.memory_limit_mb"] == "4096"


def test_a_point_over_its_limit_fails_with_the_limit_named() -> None:
    with pytest.raises(OutOfMemoryError) as error:
        run_isolated(functools.partial(_job, allocate_mb=2048), memory_limit_mb=1024)
    assert "1024 MiB" in str(error.value)


def test_a_killed_child_is_reported_not_hung() -> None:
    with pytest.raises(MeasurementError, match="SIGKILL"):
        run_isolated(functools.partial(_job, crash=True))


def test_a_failing_job_comes_back_as_one_line() -> None:
    with pytest.raises(MeasurementError, match="RuntimeError: the model could not be loaded"):
        run_isolated(functools.partial(_job, fail=True))


def _fake_cgroup_tree(root: Path, subtree: str = "memory") -> Path:
    (root / "cgroup.controllers").write_text("cpu memory io\n")
    group = root / "user.slice" / "me"
    group.mkdir(parents=True)
    (group / "cgroup.controllers").write_text("cpu memory\n")
    (group / "cgroup.subtree_control").write_text(subtree)
    return group


def test_cgroup_v2_detection_and_a_limited_child_group(tmp_path: Path) -> None:
    group = _fake_cgroup_tree(tmp_path)
    proc = tmp_path / "proc_cgroup"
    proc.write_text("0::/user.slice/me\n")
    assert own_cgroup(tmp_path, proc) == group
    child = make_memory_cgroup(256, root=tmp_path, parent=group)
    assert child is not None and child.parent == group
    assert (child / "memory.max").read_text() == str(256 * 2**20)
    (child / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert oom_kills(child) == 1


def test_no_cgroup_v2_means_the_rlimit_fallback(tmp_path: Path) -> None:
    assert own_cgroup(tmp_path / "absent") is None
    assert make_memory_cgroup(256, root=tmp_path / "absent") is None
    group = _fake_cgroup_tree(tmp_path, subtree="")
    control = group / "cgroup.subtree_control"
    control.unlink()
    control.mkdir()  # reads as empty and refuses the "+memory" write, as a busy cgroup does (EBUSY)
    assert make_memory_cgroup(256, root=tmp_path, parent=group) is None
    assert not [path for path in group.iterdir() if path.name.startswith("mlperf_track_")]
