"""One worker's share of a study: run trials until the study holds ``n_trials``, then help finish it.

``--n-trials`` is the size of the *study*, not of one process, so that several workers started with the same
command fill one budget, and a study interrupted half-way is completed by running the command again.
A worker starts a new trial while the study has fewer than ``n_trials`` trials that are not retries, and
always runs queued trials (the initial design, at most half the budget, and retries of trials whose worker
died, see :mod:`mlperf_track.tuning.storage`).
When the budget is reached but other workers' trials are still running, it waits and checks their
heartbeats, so that a trial whose worker was killed is failed, queued again and run by a live worker
instead of being lost. Workers that ask for their last trial at the same instant may each start one, so
a study with ``k`` workers can end with up to ``k - 1`` trials more than asked for.

The loop is Optuna's ask-and-tell interface rather than ``study.optimize``: a live worker whose heartbeat came
late (a loaded machine, a long pause of the database) finds its trial already failed by another worker, and
``optimize`` then dies on "Cannot tell a FAIL trial" / "Should not reach" (optuna issues #4234, #5470, #5582).
Here such a trial is *lost to the heartbeat*: its result is dropped with a warning, the retry another worker
queued measures it again, and this worker goes on. The heartbeat thread is ours for the same reason: one failed
write (a dropped connection) is retried at the next beat instead of silently ending the heartbeat.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from enum import Enum
from typing import Any, Final

import optuna
from optuna.storages import fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from mlperf_track.errors import MeasurementError
from mlperf_track.secrets import mask_text

logger = logging.getLogger(__name__)

#: System attribute Optuna's retry callback puts on a queued copy of a failed trial.
RETRY_OF_ATTR: Final = "failed_trial"

TrialCallback = Callable[[optuna.Study, FrozenTrial], None]


class Budget(Enum):
    """What a worker should do next."""

    RUN = "run"
    WAIT = "wait"
    DONE = "done"


def budget_state(study: optuna.Study, n_trials: int) -> Budget:
    """Whether to start a trial, wait for other workers' running trials, or stop."""
    trials = study.get_trials(deepcopy=False)
    if any(trial.state == TrialState.WAITING for trial in trials):
        return Budget.RUN  # queued: a retry, or the initial design (never more than the budget)
    originals = [trial for trial in trials if RETRY_OF_ATTR not in trial.system_attrs]
    if len(originals) < n_trials:
        return Budget.RUN
    if any(trial.state == TrialState.RUNNING for trial in trials):
        return Budget.WAIT
    return Budget.DONE


class BudgetKeeper:
    """Says when this worker should stop: the study's budget is spent and no other worker's trial runs.

    Args:
        n_trials: The study's budget.
        heartbeat: Whether the storage has heartbeats (only then can a dead worker's trial be detected; without
            them a worker does not wait for running trials).
        poll_s: Seconds between checks while waiting for other workers.
    """

    def __init__(self, n_trials: int, *, heartbeat: bool, poll_s: float = 1.0) -> None:
        self.n_trials = n_trials
        self.heartbeat = heartbeat
        self.poll_s = poll_s

    def next_step(self, study: optuna.Study) -> Budget:
        """Block while other workers' trials run; return :attr:`Budget.RUN` or :attr:`Budget.DONE`."""
        state = budget_state(study, self.n_trials)
        while state == Budget.WAIT and self.heartbeat:
            time.sleep(self.poll_s)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                fail_stale_trials(study)
            state = budget_state(study, self.n_trials)
        return Budget.RUN if state == Budget.RUN else Budget.DONE


class _Heartbeat:
    """Records a running trial's heartbeat every ``interval_s`` seconds in a thread (see the module docstring)."""

    def __init__(self, storage: Any, trial_id: int, interval_s: float) -> None:
        self._storage, self._trial_id, self._interval_s = storage, trial_id, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{trial_id}", daemon=True)

    def _beat(self) -> None:
        while True:
            try:
                self._storage.record_heartbeat(self._trial_id)
            except Exception as error:  # a dropped connection: the next beat retries
                logger.warning("heartbeat of trial id %d failed (%s); retrying", self._trial_id, mask_text(str(error)))
            if self._stop.wait(self._interval_s):
                return

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


def _still_ours(study: optuna.Study, trial: optuna.Trial) -> bool:
    """Whether the trial is still RUNNING (not failed by another worker's heartbeat check)."""
    # Optuna has no public "is this trial still mine?"; the storage and trial id are what its own loop uses.
    return bool(study._storage.get_trial(trial._trial_id).state == TrialState.RUNNING)


def _tell(
    study: optuna.Study, trial: optuna.Trial, values: float | Sequence[float] | None, state: TrialState | None
) -> FrozenTrial | None:
    """Tell the outcome; ``None`` when the trial was failed under us (lost to the heartbeat)."""
    try:
        if not _still_ours(study, trial):
            return None
        return study.tell(trial, values, state=state)
    except optuna.exceptions.UpdateFinishedTrialError:
        return None  # failed by another worker between the check and the write


def _run_trial(
    study: optuna.Study, objective: Callable[[optuna.Trial], float | Sequence[float]], heartbeat_s: float | None
) -> FrozenTrial | None:
    """Ask, measure, tell. Returns the finished trial, or ``None`` when it was lost to the heartbeat."""
    trial = study.ask()
    beating = _Heartbeat(study._storage, trial._trial_id, heartbeat_s) if heartbeat_s else contextlib.nullcontext()
    values: float | Sequence[float] | None = None
    state: TrialState | None = None
    try:
        with beating:
            values = objective(trial)
    except optuna.TrialPruned:
        state = TrialState.PRUNED
    except optuna.exceptions.UpdateFinishedTrialError:
        pass  # the objective wrote to a trial another worker had failed: lost, see below
    except MeasurementError as error:
        logger.debug("trial %d failed: %s", trial.number, error, exc_info=True)
        state = TrialState.FAIL
    except BaseException:
        _tell(study, trial, None, TrialState.FAIL)  # a bug or an interruption: the trial ends, the error goes on
        raise
    frozen = _tell(study, trial, values, state)
    if frozen is None:
        logger.warning(
            "trial %d was failed by another worker while this one measured it (its heartbeat came late): the "
            "result is dropped and the queued retry measures it again; raise --grace-period on a loaded machine",
            trial.number,
        )
    return frozen


def run_worker(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float | Sequence[float]],
    n_trials: int,
    *,
    heartbeat: bool,
    callbacks: Sequence[TrialCallback] = (),
    poll_s: float = 1.0,
) -> int:
    """Run trials of ``study`` until its budget is spent; returns how many trials this worker finished.

    Trials whose case failed (:class:`MeasurementError`) end ``FAIL`` and the study goes on; anything else
    (a bug, ``KeyboardInterrupt``) fails the running trial and propagates. ``callbacks`` see every trial this
    worker finished (not the ones lost to the heartbeat: the worker that failed them reports them).
    """
    keeper = BudgetKeeper(n_trials, heartbeat=heartbeat, poll_s=poll_s)
    if keeper.next_step(study) == Budget.DONE:
        logger.info("study %s already holds %d trials; nothing to run", study.study_name, len(study.trials))
        return 0
    interval = getattr(study._storage, "get_heartbeat_interval", lambda: None)() if heartbeat else None
    ran = 0
    with _optuna_loop(study):
        while True:
            if heartbeat:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    fail_stale_trials(study)
            frozen = _run_trial(study, objective, interval)
            if frozen is not None:
                ran += 1
                for callback in callbacks:
                    callback(study, frozen)
            if study._stop_flag:  # a sampler (grid exhausted) or a callback called study.stop()
                logger.info("study %s was stopped (its sampler has nothing left to try)", study.study_name)
                return ran
            if keeper.next_step(study) == Budget.DONE:
                return ran


@contextlib.contextmanager
def _optuna_loop(study: optuna.Study) -> Iterator[None]:
    """Mark the thread as inside an optimisation loop, as ``study.optimize`` does.

    Samplers rely on it: GridSampler calls ``study.stop()`` from ``after_trial`` once the grid is exhausted, which
    Optuna allows only inside its loop, and ``study.ask()`` warns about heartbeats outside it.
    """
    local = study._thread_local
    if local.in_optimize_loop:
        raise RuntimeError("nested optimisation of one study in one thread")
    study._stop_flag = False
    local.in_optimize_loop = True
    try:
        yield
    finally:
        local.in_optimize_loop = False
        study._stop_flag = False
