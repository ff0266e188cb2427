"""``mlperf-track bench``: the table, the JSON, and one clear line with exit code 2 for every bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlperf_track import metrics as m
from mlperf_track.cli import main

FAST = ["--max-time", "0.3", "--target-ci", "0.05"]
CPU_METRICS = (
    *m.LATENCY_KEYS,
    m.THROUGHPUT,
    m.CPU_RSS_PEAK,
    m.CPU_UTILIZATION,
    m.MODEL_PARAMS,
    m.MODEL_SIZE,
    m.MODEL_FLOPS,
    m.STARTUP_LOAD,
    m.STARTUP_PREPARE,
)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLPERF_TRACK_CACHE", str(tmp_path / "cache"))


def test_bench_writes_every_cpu_metric(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "r.json"
    code = main(
        [
            "bench",
            "--model",
            "tinycnn",
            "--device",
            "cpu",
            "--runtimes",
            "eager",
            "--batch-size",
            "1,4",
            "--image-size",
            "16",
            "--output",
            str(output),
            *FAST,
        ]
    )

    assert code == 0
    results = json.loads(output.read_text())["results"]
    assert [r["case"]["batch_size"] for r in results] == [1, 4]
    for result in results:
        missing = [key for key in CPU_METRICS if key not in result["metrics"]]
        assert not missing, missing
        assert result["samples_ms"]
    assert m.STARTUP_FIRST_INFERENCE in results[0]["metrics"]
    assert "p50 ms" in capsys.readouterr().out


@pytest.mark.integration
def test_console_script_runs(tmp_path: Path) -> None:
    script = shutil.which("mlperf-track") or str(Path(sys.executable).parent / "mlperf-track")
    completed = subprocess.run(
        [script, "bench", "--model", "tinycnn", "--device", "cpu", "--image-size", "16", "--runtimes", "eager", *FAST],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "eager" in completed.stdout


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--model", "resnet1800"], "model"),
        (["--model", "tinycnn", "--batch-size", "0"], "--batch-size"),
        (["--model", "tinycnn", "--batch-size", "two"], "--batch-size"),
        (["--model", "tinycnn", "--precision", "fp12"], "--precision"),
        (["--model", "tinycnn", "--device", "cpu", "--precision", "tf32"], "precision"),
        (["--model", "tinycnn", "--image-size", "0"], "--image-size"),
        (["--model", "tinycnn", "--image-size", "-3"], "--image-size"),
        (["--model", "resnet18", "--weights", "/nonexistent/weights.pth"], "--weights"),
        (["--model", "tinycnn", "--device", "tpu"], "--device"),
        (["--model", "tinycnn", "--output", "/nonexistent/dir/r.json"], "--output"),
        (["--model", "tinycnn", "--runtime", "warp"], "runtime"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    arguments: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["bench", *arguments, *FAST])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert expected in err and "Traceback" not in err


def test_cuda_without_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    code = main(["bench", "--model", "tinycnn", "--device", "cuda", *FAST])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "cuda" in err and len(err.splitlines()) == 1


def test_debug_shows_the_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--debug", "bench", "--model", "resnet1800", *FAST])
    assert code == 2
    assert "Traceback" in capsys.readouterr().err
