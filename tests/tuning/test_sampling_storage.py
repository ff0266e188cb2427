"""Initial design, the shared budget, storages and the heartbeat retry (SQLite, one process)."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from tuning_fakes import FakeBackend, small_space

from mlperf_track.tuning.config import TuneConfig
from mlperf_track.tuning.objective import Limits, TrialObjective, targets_for
from mlperf_track.tuning.runner import run_tune
from mlperf_track.tuning.sampling import initial_design, startup_trials, worker_seed
from mlperf_track.tuning.space import BATCH_PARAM, CONFIG_PARAM, THREADS_PARAM, Choice, SearchSpace
from mlperf_track.tuning.storage import (
    StaleTrialHandler,
    open_storage,
    redact,
    resolve_storage_url,
    with_installed_driver,
)
from mlperf_track.tuning.workers import Budget, budget_state, run_worker

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_initial_design_is_each_configuration_at_the_middle() -> None:
    space = small_space()
    design = initial_design(space, n_trials=12, seed=0)
    assert [params[CONFIG_PARAM] for params in design] == [choice.key for choice in space.choices]
    assert {params[BATCH_PARAM] for params in design} == {16}  # the upper middle of 1..128
    threaded = SearchSpace(space.choices, (1, 2), (1, 2, 4))
    assert {params[THREADS_PARAM] for params in initial_design(threaded, 12, 0)} == {2}


def test_initial_design_never_takes_more_than_half_the_budget() -> None:
    choices = tuple(Choice("baseline", "eager", p, (("k", str(i)),)) for i in range(10) for p in ("fp32",))
    space = SearchSpace(choices, (1, 2, 4))
    design = initial_design(space, n_trials=8, seed=3)
    assert len(design) == 4
    assert design == initial_design(space, n_trials=8, seed=3)  # seeded


def test_tpe_study_starts_with_the_design_then_models() -> None:
    backend = FakeBackend(small_space())
    outcome = run_tune(
        TuneConfig.create("fakenet", device="cpu", n_trials=8, storage="none", sampler="tpe"), backend, track=False
    )
    first = outcome.study.trials[:3]
    assert [t.params[CONFIG_PARAM] for t in first] == [c.key for c in backend.space.choices]
    assert all(t.params[BATCH_PARAM] == 16 for t in first)
    assert len(outcome.study.trials) == 8


def test_sampler_settings() -> None:
    assert startup_trials(12, 48) == 4
    assert startup_trials(200, 48) == 10
    assert startup_trials(12, 2) == 2
    assert worker_seed(7, shared=False) == 7
    assert worker_seed(7, shared=True) != 7


def test_budget_counts_originals_and_always_runs_queued_trials() -> None:
    study = optuna.create_study()
    assert budget_state(study, 2) == Budget.RUN
    study.enqueue_trial({"x": 1.0})
    study.add_trial(optuna.create_trial(value=1.0, params={}, distributions={}))
    study.add_trial(optuna.create_trial(value=1.0, params={}, distributions={}))
    assert budget_state(study, 2) == Budget.RUN  # a queued trial always runs
    study.tell(study.ask(), 1.0)  # pops the queued one
    assert budget_state(study, 2) == Budget.DONE
    running = study.ask()
    assert budget_state(study, 2) == Budget.WAIT
    study.tell(running, 1.0)
    retry = optuna.create_trial(value=1.0, params={}, distributions={}, system_attrs={"failed_trial": 0})
    study.add_trial(retry)
    assert budget_state(study, 5) == Budget.RUN  # 4 originals, the retry does not count


def test_storage_urls() -> None:
    assert resolve_storage_url("none") is None
    assert resolve_storage_url("memory") is None
    assert resolve_storage_url("auto", Path("/data")) == "sqlite:////data/optuna.db"
    assert redact("postgresql://u:pw@host:5432/db") == "postgresql://u:***@host:5432/db"
    assert redact(None) == "memory"
    url = with_installed_driver("postgresql://u@h/db")
    assert url in ("postgresql://u@h/db", "postgresql+psycopg2://u@h/db")
    assert with_installed_driver("sqlite:///x.db") == "sqlite:///x.db"


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_stale_trial_is_failed_and_retried_by_the_next_worker(tmp_path: Path) -> None:
    """A trial whose worker stopped beating is failed, queued again and run: here in one process, on SQLite."""
    handler = StaleTrialHandler(max_retry=2)
    logged: list[int] = []
    handler.listeners.append(lambda study, trial: logged.append(trial.number))
    storage = open_storage(
        f"sqlite:///{tmp_path / 'stale.db'}", heartbeat_interval_s=1, grace_period_s=2, stale_handler=handler
    )
    backend = FakeBackend(small_space((1, 2)))
    targets = targets_for("throughput", with_accuracy=True)
    study = optuna.create_study(storage=storage, study_name="stale", direction="maximize")
    dead = study.ask()  # the "dead worker": started a trial, beat once, then nothing
    backend.space.suggest(dead)
    assert isinstance(storage, optuna.storages.RDBStorage)
    storage.record_heartbeat(dead._trial_id)
    time.sleep(2.5)
    objective = TrialObjective(backend.space, targets, Limits(), backend.measure, backend.template())
    ran = run_worker(study, objective, 3, heartbeat=True, poll_s=0.2)
    trials = study.get_trials()
    assert trials[0].state == TrialState.FAIL
    assert logged == [0]
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == 0]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == trials[0].params
    assert ran == 3  # the retry and the two new trials that fill the budget of 3 originals
    assert budget_state(study, 3) == Budget.DONE


@pytest.mark.parametrize("url", ["mysql://nobody@127.0.0.1:1/x", "notadb://x", "postgresql://u:pw@127.0.0.1:1/db"])
def test_bad_storage_urls_are_storage_errors(url: str) -> None:
    from mlperf_track.errors import StorageError

    with pytest.raises(StorageError) as caught:
        open_storage(url, heartbeat_interval_s=1, grace_period_s=2)
    message = str(caught.value)
    assert "\n" not in message
    assert "pw" not in message
