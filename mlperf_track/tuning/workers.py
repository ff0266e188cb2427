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
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Final

import optuna
from optuna.storages import fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from mlperf_track.errors import MeasurementError

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
    """An Optuna callback that stops this worker when the study's budget is spent.

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

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if self.next_step(study) == Budget.DONE:
            study.stop()


def run_worker(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float | Sequence[float]],
    n_trials: int,
    *,
    heartbeat: bool,
    callbacks: Sequence[TrialCallback] = (),
    poll_s: float = 1.0,
) -> int:
    """Run trials of ``study`` until its budget is spent; returns how many trials this worker ran.

    Trials whose case failed (:class:`MeasurementError`) end ``FAIL`` and the study goes on; anything else
    (a bug, ``KeyboardInterrupt``) fails the running trial and propagates.
    """
    keeper = BudgetKeeper(n_trials, heartbeat=heartbeat, poll_s=poll_s)
    if keeper.next_step(study) == Budget.DONE:
        logger.info("study %s already holds %d trials; nothing to run", study.study_name, len(study.trials))
        return 0
    ran = 0

    def count(study: optuna.Study, trial: FrozenTrial) -> None:
        nonlocal ran
        ran += 1

    study.optimize(
        objective,
        n_trials=None,
        catch=(MeasurementError,),
        callbacks=[count, *callbacks, keeper],
    )
    return ran
