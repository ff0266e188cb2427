"""Private work folders: never shared, published whole, deleted when logged, orphans of dead processes removed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mlperf_track.liveness import ProcessIdentity, start_ticks
from mlperf_track.pipeline.workdir import OWNER_FILE, WORK_ROOT, WorkDir, remove_orphans


def _write_case(work: WorkDir, name: str, text: str) -> dict[str, Path]:
    folder = work.case_dir(name)
    (folder / "samples.csv").write_text(text, encoding="utf-8")
    (folder / "result.json").write_text(json.dumps({"who": text}), encoding="utf-8")
    return {"samples.csv": folder / "samples.csv", "result.json": folder / "result.json"}


def test_two_work_folders_in_one_output_folder_never_share_a_file(tmp_path: Path) -> None:
    first, second = WorkDir(tmp_path), WorkDir(tmp_path)
    a = _write_case(first, "case-bs1", "first")
    b = _write_case(second, "case-bs1", "second")
    assert first.root != second.root and a["samples.csv"] != b["samples.csv"]
    assert a["samples.csv"].read_text(encoding="utf-8") == "first"
    owner = json.loads((first.root / OWNER_FILE).read_text(encoding="utf-8"))
    assert owner["pid"] == str(os.getpid())


def test_publish_moves_the_whole_folder_and_the_last_one_wins(tmp_path: Path) -> None:
    first, second = WorkDir(tmp_path), WorkDir(tmp_path)
    a = first.publish("case-bs1", _write_case(first, "case-bs1", "first"))
    assert a["samples.csv"] == tmp_path / "case-bs1" / "samples.csv"
    assert a["samples.csv"].read_text(encoding="utf-8") == "first"
    b = second.publish("case-bs1", _write_case(second, "case-bs1", "second"))
    assert b == a  # same place, the other process's complete set
    assert b["samples.csv"].read_text(encoding="utf-8") == "second"
    assert json.loads(b["result.json"].read_text(encoding="utf-8")) == {"who": "second"}
    assert sorted(path.name for path in (tmp_path / "case-bs1").iterdir()) == ["result.json", "samples.csv"]


def test_discard_and_close_leave_nothing_behind(tmp_path: Path) -> None:
    work = WorkDir(tmp_path)
    _write_case(work, "case-bs1", "x")
    _write_case(work, "case-bs2", "y")
    work.discard("case-bs1")
    assert not (work.root / "case-bs1").exists() and (work.root / "case-bs2").exists()
    work.close()
    assert not (tmp_path / WORK_ROOT).exists()


def test_orphans_of_gone_processes_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    live = WorkDir(tmp_path)
    _write_case(live, "case", "mine")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.2)"])
    dead_owner = ProcessIdentity(ProcessIdentity.current().host, ProcessIdentity.current().boot, child.pid,
                                 start_ticks(child.pid))  # fmt: skip
    child.wait()
    orphan = tmp_path / WORK_ROOT / "orphan"
    (orphan / "case").mkdir(parents=True)
    (orphan / OWNER_FILE).write_text(json.dumps(dead_owner.to_dict()), encoding="utf-8")
    foreign = tmp_path / WORK_ROOT / "foreign"
    foreign.mkdir()
    other_host = {**dead_owner.to_dict(), "host": "another-host"}
    (foreign / OWNER_FILE).write_text(json.dumps(other_host), encoding="utf-8")
    assert remove_orphans(tmp_path) == [orphan]
    assert live.root.is_dir() and foreign.is_dir() and not orphan.exists()
