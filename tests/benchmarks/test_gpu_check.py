"""``benchmarks/gpu_check.py --dry-run``: the GPU proof's plan runs on the CPU at tiny sizes, so it never rots."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_dry_run_runs_the_whole_plan(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""}
    report = tmp_path / "rows.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--dry-run", "--json", str(report)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    out = done.stdout
    # the plan it would run on a GPU, with the GPU batch sizes
    assert "plan: eager fp32 bs1/32/256" in out and "tensorrt fp16 bs1/32/256" in out
    assert "compile reduce-overhead bf16 cl bs1" in out
    for group in ("eager", "compile", "variant", "onnxruntime"):
        assert any(line.startswith(group) and line.rstrip().endswith("ok") for line in out.splitlines()), group
    assert "mlflow imported: False" in out  # the GPU machine needs no MLflow
    rows = json.loads(report.read_text())
    assert {row["status"] for row in rows} <= {"ok"} | {
        row["status"] for row in rows if row["status"].startswith("skip")
    }
    measured = [row for row in rows if row["status"] == "ok"]
    assert measured and all(row["engine_ms"] > 0 and row["hand_ms"] > 0 for row in measured)


def test_a_gpu_run_without_a_gpu_says_what_to_do() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    assert done.returncode == 2
    assert "--dry-run" in done.stdout
