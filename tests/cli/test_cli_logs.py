"""A quiet console: our notes once, third-party and native output in the log file unless --verbose."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mlperf_track.cli.logs import OnceFilter, OwnRecordsFilter

REPO = Path(__file__).resolve().parents[2]


def _record(name: str, message: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


def test_once_filter_lets_each_distinct_message_through_once() -> None:
    once = OnceFilter()
    note = "cpu_energy: metrics left out: no RAPL package zones"
    assert once.filter(_record("mlperf_track.engine", note))
    assert not once.filter(_record("mlperf_track.engine", note))
    assert once.filter(_record("mlperf_track.engine", note + " (other)"))
    assert once.filter(_record("mlperf_track.engine", note, logging.WARNING))


def test_own_records_filter_keeps_only_mlperf_track() -> None:
    own = OwnRecordsFilter()
    assert own.filter(_record("mlperf_track", "x")) and own.filter(_record("mlperf_track.cli", "x"))
    assert not own.filter(_record("torch._inductor", "x")) and not own.filter(_record("mlperf_track_other", "x"))


# Emits what a real run emits: a per-case note many times, third-party log records and Python warnings, and
# output of C code and of a child process on file descriptors 1 and 2.
_SCRIPT = """
import ctypes, logging, subprocess, sys, warnings
from pathlib import Path
from mlperf_track.cli.logs import configure_logging, native_output_to, terminal_stderr

log = Path(sys.argv[1])
verbose = sys.argv[2] == "verbose"
configure_logging(verbose=verbose, log_file=log)
with (native_output_to(log) if not verbose else open(log, "a")):
    for case in range(3):
        logging.getLogger("mlperf_track.engine.monitors").info("no RAPL package zones here")
    logging.getLogger("torch._inductor.utils").warning("inductor noise")
    logging.getLogger("mlflow.store.db.utils").info("Creating initial MLflow database tables...")
    warnings.warn("a deprecation from a library")
    libc = ctypes.CDLL(None)
    libc.write(2, b"USDT: profiler_start\\n", 21)
    libc.printf(b"native stdout line\\n")
    subprocess.run(["sh", "-c", "echo child process noise >&2"], check=True)
    own = logging.getLogger("torch.utils._pytree")  # torch logs through a handler of its own, made on import
    own.propagate = False
    own.addHandler(logging.StreamHandler())
    own.warning("W1201 torch's own handler line")
    sys.stderr.write("a library wrote to sys.stderr\\n")
    print("our table line")
    print("our error line", file=terminal_stderr())
"""


def _run(tmp_path: Path, mode: str) -> tuple[subprocess.CompletedProcess[str], str]:
    log = tmp_path / f"{mode}.log"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    completed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_SCRIPT), str(log), mode],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    return completed, log.read_text(encoding="utf-8")


def test_console_says_a_note_once_and_the_log_file_keeps_everything(tmp_path: Path) -> None:
    completed, log = _run(tmp_path, "quiet")
    console = completed.stdout + completed.stderr
    assert console.count("no RAPL package zones here") == 1
    assert "our table line" in completed.stdout and "our error line" in completed.stderr
    for noise in (
        "inductor noise",
        "Creating initial MLflow",
        "a deprecation",
        "USDT",
        "native stdout",
        "child process noise",
        "torch's own handler line",
        "a library wrote to sys.stderr",
    ):
        assert noise not in console, noise
        assert noise in log, noise
    assert log.count("no RAPL package zones here") == 3


def test_verbose_shows_third_party_output_on_the_console(tmp_path: Path) -> None:
    completed, log = _run(tmp_path, "verbose")
    console = completed.stdout + completed.stderr
    for shown in ("inductor noise", "a deprecation", "USDT", "child process noise", "torch's own handler line"):
        assert shown in console, shown
    assert "inductor noise" in log


def test_quiet_after_the_subcommand_hides_info(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLPERF_TRACK_CACHE": str(tmp_path / "cache")}
    completed = subprocess.run(
        [sys.executable, "-m", "mlperf_track", "bench", "--model", "tinycnn", "--device", "cpu", "--image-size",
         "16", "--batch-sizes", "1", "--runtimes", "eager", "--max-time", "0.2", "--quiet"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert " INFO " not in completed.stderr
    assert "baseline-eager-fp32-bs1" in completed.stdout
    logs = list((tmp_path / "mlperf_track_output" / "logs").glob("bench-*.log"))
    assert len(logs) == 1 and "INFO mlperf_track" in logs[0].read_text(encoding="utf-8")


@pytest.mark.slow
def test_profile_keeps_profiler_lines_off_the_console(tmp_path: Path) -> None:
    """torch's profiler prints ``USDT ... profiler_start`` from C++; the quiet console must not show it."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "MLPERF_TRACK_CACHE": str(tmp_path / "cache"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        env.pop(name, None)
    completed = subprocess.run(
        [sys.executable, "-m", "mlperf_track", "profile", "--model", "tinycnn", "--device", "cpu", "--image-size",
         "16", "--batch-sizes", "1", "--runtimes", "eager", "--max-time", "0.2"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=400, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    console = completed.stdout + completed.stderr
    for noise in ("USDT", "gpuGetDeviceCount", "Warning", "warnings.warn"):
        assert noise not in console, noise
    assert " -> " not in console and console.count("profiler files (flamegraph.svg") == 1  # one line for all cases
    assert "experiment mlperf_track/tinycnn" in completed.stdout
    (log,) = (tmp_path / "mlperf_track_output" / "logs").glob("profile-*.log")
    assert "profiled baseline-eager-fp32-bs1" in log.read_text(encoding="utf-8")
