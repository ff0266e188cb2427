"""The worker loop (ask and tell): a trial failed under a live worker, a flaky heartbeat, a finished grid."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from mlperf_track.errors import MeasurementError
from mlperf_track.tuning.storage import open_storage
from mlperf_track.tuning.workers import Budget, _Heartbeat, budget_state, run_worker

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _sqlite_study(tmp_path: Path, name: str) -> optuna.Study:
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}", heartbeat_interval_s=1, grace_period_s=2)
    return optuna.create_study(storage=storage, study_name=name, direction="maximize")


def test_a_trial_failed_by_another_worker_is_dropped_and_the_worker_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    study = _sqlite_study(tmp_path, "lost")
    seen: list[int] = []

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        if trial.number == 1:  # what another worker's fail_stale_trials does to a trial whose heartbeat came late
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        return x

    with caplog.at_level(logging.WARNING, logger="mlperf_track.tuning.workers"):
        ran = run_worker(study, objective, 4, heartbeat=True, callbacks=[lambda s, t: seen.append(t.number)])
    trials = study.get_trials()
    assert trials[1].state == TrialState.FAIL and trials[1].values is None  # its late result was not written
    assert 1 not in seen and ran == len(seen) == len(trials) - 1
    assert budget_state(study, 4) == Budget.DONE
    assert any("trial 1 was failed by another worker" in record.getMessage() for record in caplog.records)


def test_measurement_errors_fail_the_trial_and_other_errors_propagate(tmp_path: Path) -> None:
    study = _sqlite_study(tmp_path, "errors")

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_int("n", 0, 9)
        if trial.number == 0:
            raise MeasurementError("case failed")
        if trial.number == 2:
            raise KeyboardInterrupt
        return 1.0

    with pytest.raises(KeyboardInterrupt):
        run_worker(study, objective, 5, heartbeat=True)
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.FAIL]


def test_an_exhausted_grid_stops_the_worker_before_the_budget() -> None:
    sampler = optuna.samplers.GridSampler({"n": [1, 2, 3]}, seed=0)
    study = optuna.create_study(sampler=sampler)
    ran = run_worker(study, lambda trial: float(trial.suggest_int("n", 1, 3)), 10, heartbeat=False)
    assert ran == 3
    assert sorted(t.params["n"] for t in study.get_trials()) == [1, 2, 3]


class _FlakyStorage:
    """A storage whose first heartbeat write fails, as with a dropped database connection."""

    def __init__(self) -> None:
        self.beats = 0
        self.lock = threading.Lock()

    def record_heartbeat(self, trial_id: int) -> None:
        with self.lock:
            self.beats += 1
            if self.beats == 1:
                raise ConnectionError("server closed the connection for postgresql://u:hunter2@db/optuna")


def test_one_failed_heartbeat_write_does_not_end_the_heartbeat(caplog: pytest.LogCaptureFixture) -> None:
    storage = _FlakyStorage()
    with caplog.at_level(logging.WARNING, logger="mlperf_track.tuning.workers"), _Heartbeat(storage, 7, 0.02):
        deadline = threading.Event()
        for _ in range(200):
            if storage.beats >= 3:
                break
            deadline.wait(0.02)
    assert storage.beats >= 3
    messages = " ".join(record.getMessage() for record in caplog.records)
    assert "heartbeat of trial id 7 failed" in messages and "hunter2" not in messages
