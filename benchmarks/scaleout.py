"""Scale-out: many workers on one Optuna study in PostgreSQL, some of them SIGKILLed mid-trial.

Every worker is a separate process running the tuner's own worker loop (:func:`mlperf_track.tuning.workers.run_worker`
on :func:`mlperf_track.tuning.storage.open_storage`: the same heartbeat, retry, budget and connection pool as
``mlperf-track tune``) with a *fast objective*: it sleeps ``--trial-s`` seconds (+-50% jitter) and returns a
function of its two parameters, so that 200 trials fit in a minute on two cores. What is measured is the
coordination, not a model: after ``--kill-after`` of the budget is done, ``--kill`` workers are SIGKILLed (each
inside a trial), and the table says

* trials lost: original trials that failed without a completed retry (must be 0);
* duplicated: failed trials retried more than once to completion, or original trials beyond the documented
  ``n_trials + workers - 1`` (must be 0);
* "already finished" errors: surviving workers that exited non-zero (must be 0);
* study finished: no trial RUNNING or WAITING and the budget reached;
* peak connections to the server (``pg_stat_activity``) against workers x (pool size + overflow);
* wall time.

Usage (needs a PostgreSQL server binary; by default one is started on 127.0.0.1 in a temporary folder)::

    python benchmarks/scaleout.py                              # 16 workers x 200 trials, 3 killed
    python benchmarks/scaleout.py --workers 4 --trials 40      # smoke run
    python benchmarks/scaleout.py --storage postgresql://user@host/db   # an existing database
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "tuning")]


def _worker(url: str, study_name: str, n_trials: int, trial_s: float) -> int:
    import optuna

    from mlperf_track.tuning.storage import open_storage
    from mlperf_track.tuning.workers import run_worker

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(url, heartbeat_interval_s=1, grace_period_s=4)
    study = optuna.load_study(study_name=study_name, storage=storage)
    jitter = random.Random(os.getpid())

    def objective(trial: optuna.Trial) -> float:
        x, y = trial.suggest_float("x", -5, 5), trial.suggest_int("y", 0, 10)
        trial.set_user_attr("pid", os.getpid())  # so that the benchmark kills workers inside a trial
        time.sleep(trial_s * jitter.uniform(0.5, 1.5))
        return (x - 1) ** 2 + y

    run_worker(study, objective, n_trials, heartbeat=True, poll_s=0.5)
    return 0


@contextlib.contextmanager
def _database(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    from postgres_server import postgres_server

    with postgres_server(("optuna",), max_connections=200) as server:
        yield server.url("optuna")


def _connections(url: str) -> int:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    with engine.connect() as connection:
        query = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        count = int(connection.execute(sqlalchemy.text(query)).scalar_one()) - 1  # not this one
    engine.dispose()
    return count


def _run(args: argparse.Namespace, url: str) -> dict[str, object]:
    import optuna

    from mlperf_track.tuning.storage import MAX_OVERFLOW, POOL_SIZE, open_storage

    study_name = f"scaleout-{int(time.time())}"
    optuna.create_study(study_name=study_name, storage=open_storage(url, heartbeat_interval_s=1, grace_period_s=4))
    command = [sys.executable, __file__, "--worker", url, study_name, str(args.trials), str(args.trial_s)]
    logs = Path(args.log_dir)
    logs.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    workers = [
        subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=(logs / f"worker-{i}.log").open("w"))
        for i in range(args.workers)
    ]
    killed: list[subprocess.Popen[bytes]] = []
    peak = 0
    study = optuna.load_study(study_name=study_name, storage=url)
    while any(worker.poll() is None for worker in workers):
        peak = max(peak, _connections(url))
        done = sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))
        if len(killed) < args.kill and done >= args.kill_after * args.trials:
            killed += _kill_inside_trials(study, workers, args.kill - len(killed))
        time.sleep(0.5)
    wall = time.perf_counter() - started
    return _summary(
        study.get_trials(),
        args,
        workers=workers,
        killed=killed,
        peak=peak,
        wall=wall,
        per_worker=POOL_SIZE + MAX_OVERFLOW,
    )


def _kill_inside_trials(
    study: optuna.Study, workers: list[subprocess.Popen[bytes]], count: int
) -> list[subprocess.Popen[bytes]]:
    """SIGKILL up to ``count`` live workers that are measuring a trial now."""
    from optuna.trial import TrialState

    busy = {t.user_attrs.get("pid") for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    victims = [w for w in workers if w.poll() is None and w.pid in busy][:count]
    for worker in victims:
        os.kill(worker.pid, signal.SIGKILL)
    return victims


def _summary(
    trials: list[FrozenTrial],
    args: argparse.Namespace,
    *,
    workers: list[subprocess.Popen[bytes]],
    killed: list[subprocess.Popen[bytes]],
    peak: int,
    wall: float,
    per_worker: int,
) -> dict[str, object]:
    from optuna.trial import TrialState

    retry_of = {t.number: t.system_attrs.get("failed_trial") for t in trials}
    originals = [t for t in trials if retry_of[t.number] is None]
    completed_retries: dict[int, int] = {}
    for trial in trials:
        root = retry_of[trial.number]
        if root is not None and trial.state == TrialState.COMPLETE:
            completed_retries[root] = completed_retries.get(root, 0) + 1

    def recovered(number: int) -> bool:  # a failed trial whose retry chain ends COMPLETE
        return any(retry_of[t.number] == number and (t.state == TrialState.COMPLETE or recovered(t.number))
                   for t in trials)  # fmt: skip

    failed = [t for t in trials if t.state == TrialState.FAIL]
    survivors = [w for w in workers if w not in killed]
    return {
        "workers": args.workers,
        "trials asked": args.trials,
        "trials in study": len(trials),
        "original trials": len(originals),
        "killed workers": len(killed),
        "trials failed by heartbeat": len(failed),
        "trials lost": sum(not recovered(t.number) for t in failed),
        "duplicated": sum(count > 1 for count in completed_retries.values())
        + max(0, len(originals) - (args.trials + args.workers - 1)),
        "surviving workers exiting non-zero": sum(w.returncode != 0 for w in survivors),
        "study finished": not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
        and len(originals) >= args.trials,
        "peak connections (limit workers x pool)": f"{peak} ({args.workers * per_worker})",
        "wall time s": round(wall, 1),
    }


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        url, study_name, n_trials, trial_s = sys.argv[2:6]
        return _worker(url, study_name, int(n_trials), float(trial_s))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--kill", type=int, default=3, help="workers SIGKILLed mid-run")
    parser.add_argument("--kill-after", type=float, default=0.3, help="fraction of the budget done before killing")
    parser.add_argument("--trial-s", type=float, default=1.0, help="mean seconds of the fast objective")
    parser.add_argument("--storage", default=None, help="an existing PostgreSQL URL (default: start a server)")
    parser.add_argument("--log-dir", default="scaleout_logs")
    args = parser.parse_args()
    with _database(args.storage) as url:
        row = _run(args, url)
    width = max(map(len, row))
    print(f"{'measure':<{width}}  value")
    for key, value in row.items():
        print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
