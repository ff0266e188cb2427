"""``tune --workers``: the supervisor starts real worker processes on one SQLite study (fake measurer)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from mlperf_track.cli import main
from mlperf_track.cli.tune_workers import worker_argv, worker_devices
from mlperf_track.errors import ConfigError
from mlperf_track.tuning.config import TuneConfig

REPO = Path(__file__).resolve().parents[2]
FAKE = "tuning_fakes:make_fake_backend"


@pytest.mark.integration
def test_three_workers_fill_one_study(
    tracking: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), str(REPO / "tests" / "tuning")]))
    monkeypatch.setenv("MLPERF_TRACK_FAKE_DELAY_S", "0.1")
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    code = main([
        "tune", "--model", "fakenet", "--device", "cpu", "--backend", FAKE, "--n-trials", "9", "--workers", "3",
        "--storage", storage, "--study-name", "shared", "--batch-sizes", "max:64", "--memory-limit-mb", "8000",
        "--heartbeat-interval", "1", "--grace-period", "3", "--experiment-name", tracking,
    ])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "best feasible configuration of study shared" in out
    trials = optuna.load_study(study_name="shared", storage=storage).get_trials()
    assert [t.number for t in trials] == list(range(len(trials)))
    assert 9 <= len(trials) <= 11 and {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    logs = sorted((tmp_path / "mlperf_track_output" / "tune").glob("worker-*/console.log"))
    assert len(logs) == 3


def test_worker_command_lines_carry_the_flags_but_not_the_storage(tmp_path: Path) -> None:
    from mlperf_track.cli import build_parser

    args = build_parser().parse_args([
        "tune", "--model", "fakenet", "--n-trials", "7", "--storage", "postgresql://u:hunter2@db/optuna",
        "--workers", "4", "--trust-pickle",
    ])  # fmt: skip
    config = TuneConfig.create(
        "fakenet", device="cpu", storage="postgresql://u:hunter2@db/optuna", study_name="s", experiment="e"
    )
    argv = worker_argv(args, config, tmp_path)
    assert "hunter2" not in " ".join(argv)
    assert argv[argv.index("--storage") + 1] == "auto" and argv[argv.index("--study-name") + 1] == "s"
    assert argv[argv.index("--n-trials") + 1] == "7" and argv[argv.index("--trust-pickle") + 1] == "true"
    assert "--workers" not in argv


def test_gpus_means_one_worker_per_visible_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    assert worker_devices("gpus") == ["2", "5"]
    assert worker_devices(3) == [None, None, None]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(ConfigError, match="--workers"):
        worker_devices("gpus")


@pytest.mark.parametrize(
    ("flags", "allowed"),
    [(["--workers", "0"], "a positive integer or gpus"), (["--workers", "2", "--storage", "none"], "database")],
)
def test_bad_workers_is_one_line_and_exit_code_2(
    tracking: str, capsys: pytest.CaptureFixture[str], flags: list[str], allowed: str
) -> None:
    assert main(["tune", "--model", "fakenet", "--device", "cpu", "--backend", FAKE, *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--workers" in err[0] and allowed in err[0]


def test_workers_refused_inside_mlflow_run(tracking: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlperf_track.cli.tune_workers import supervise

    monkeypatch.setenv("MLFLOW_RUN_ID", "0" * 32)
    args = argparse.Namespace(workers="2")
    with pytest.raises(ConfigError, match="mlflow run"):
        supervise(args, TuneConfig.create("fakenet", device="cpu", storage="sqlite:///x.db"))
