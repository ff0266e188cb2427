"""``mlperf-track tune --workers N|gpus``: start and supervise N worker processes on one shared study.

Each worker is ``mlperf-track tune`` with the same flags, the same study name and the same storage, so the study's
budget (``--n-trials``) is shared as it is between workers started by hand on many machines (docs/scale-out.md).
The storage URL reaches the workers through ``$MLPERF_TRACK_STORAGE``, never their command line, so its password
does not show in ``ps``. With ``gpus`` each worker sees one GPU (``CUDA_VISIBLE_DEVICES``). A worker that dies
(killed, out of memory) leaves its running trial to the heartbeat: a live worker fails it and runs its retry.
Each worker writes its console log to ``<output-dir>/worker-<i>/console.log`` and its answer table to
``answer.txt`` there; the supervisor prints the answer of the worker that finished last, which saw the whole study.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from mlperf_track.cli.options import options_for, read
from mlperf_track.errors import ConfigError
from mlperf_track.tuning.config import TuneConfig

logger = logging.getLogger(__name__)

#: Flags the supervisor sets itself for every worker.
_OWN_FLAGS = frozenset({"workers", "storage", "storage_password_file", "study_name", "experiment_name", "output_dir"})
#: Seconds workers get to stop after an interruption before they are killed.
STOP_TIMEOUT_S = 30.0


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes]
    answer: Path
    console: Path
    sinks: tuple[IO[bytes], IO[bytes]]

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


def visible_gpus() -> list[str]:
    """The GPUs this process may use: ``$CUDA_VISIBLE_DEVICES`` when set, else every device torch sees."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [item.strip() for item in listed.split(",") if item.strip() and item.strip() != "-1"]
    import torch

    return [str(index) for index in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def worker_devices(workers: int | str) -> list[str | None]:
    """One entry per worker: the GPU it sees (``gpus``), or ``None`` (it inherits the environment)."""
    if workers != "gpus":
        return [None] * int(workers)
    gpus = visible_gpus()
    if not gpus:
        raise ConfigError("--workers", "gpus", "a worker count, or gpus on a machine with a visible GPU")
    return list(gpus)


def worker_argv(args: argparse.Namespace, config: TuneConfig, output_dir: Path) -> list[str]:
    """The ``tune`` command line of one worker: the caller's flags, the shared study, no storage URL."""
    argv = [sys.executable, "-m", "mlperf_track", "tune"]
    for option in options_for("tune"):
        value = getattr(args, option.name, None)
        if option.name in _OWN_FLAGS or value is None:
            continue
        flag = "--" + option.name.replace("_", "-")
        for item in value if isinstance(value, list) else [value]:
            argv += [flag, str(item)]
    argv += ["--storage", "auto", "--study-name", str(config.search.study_name), "--output-dir", str(output_dir)]
    if config.search.experiment:
        argv += ["--experiment-name", config.search.experiment]
    if getattr(args, "backend", None):
        argv += ["--backend", args.backend]
    return argv + [flag for flag in ("--quiet", "--verbose", "--debug") if getattr(args, flag[2:], False)]


def supervise(args: argparse.Namespace, config: TuneConfig) -> int:
    """Start the workers, wait for them, print the last finisher's answer; returns the command's exit code.

    Raises:
        ConfigError: The storage is in memory, or ``gpus`` was asked on a machine without a visible GPU, or this
            runs inside ``mlflow run`` (whose one run cannot be every worker's parent run).
    """
    workers = read(args, "workers")
    search, pipeline = config.search, config.pipeline
    if search.storage is None:
        raise ConfigError("--workers", workers, "1 with --storage none (workers share a study through a database)")
    if os.environ.get("MLFLOW_RUN_ID"):
        raise ConfigError("--workers", workers, "1 inside mlflow run: start one mlflow run per worker instead")
    devices = worker_devices(workers)
    study_name = search.study_name or f"{Path(pipeline.model).name}-{search.objective}-{uuid.uuid4().hex[:8]}"
    config = config.with_search(study_name=study_name)
    _prepare_experiment(config.search.experiment)
    logger.info("starting %d workers on study %s", len(devices), study_name)
    started = [_start(args, config, index, device) for index, device in enumerate(devices)]
    try:
        finished = _wait_all(started)
    except KeyboardInterrupt:
        _stop(started)
        raise
    return _answer(finished)


def _prepare_experiment(experiment: str | None) -> None:
    """Create the MLflow experiment once, so that the workers do not race to create it."""
    from mlperf_track.tracking.setup import configure_tracking

    configure_tracking(experiment)


def _start(args: argparse.Namespace, config: TuneConfig, index: int, device: str | None) -> _Worker:
    folder = Path(config.pipeline.output_dir) / f"worker-{index}"
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MLPERF_TRACK_STORAGE": str(config.search.storage)}
    if device is not None:
        env["CUDA_VISIBLE_DEVICES"] = device
    answer, console = folder / "answer.txt", folder / "console.log"
    sinks = (answer.open("wb"), console.open("wb"))
    process = subprocess.Popen(
        worker_argv(args, config, folder), env=env, stdout=sinks[0], stderr=sinks[1], stdin=subprocess.DEVNULL
    )
    logger.info("worker %d: pid %d%s, log %s", index, process.pid, f", GPU {device}" if device else "", console)
    return _Worker(index, process, answer, console, sinks)


def _wait_all(workers: list[_Worker]) -> list[tuple[_Worker, int]]:
    """Wait until every worker exits; returns (worker, exit code) in the order they finished."""
    running, finished = list(workers), []
    while running:
        for worker in list(running):
            code = worker.process.poll()
            if code is None:
                continue
            running.remove(worker)
            worker.close()
            finished.append((worker, code))
            log = logger.info if code in (0, 1) else logger.warning
            log("worker %d (pid %d) exited with %d; %d still running", worker.index, worker.process.pid, code,
                len(running))  # fmt: skip
        time.sleep(0.2)
    return finished


def _stop(workers: list[_Worker]) -> None:
    """Interrupt the workers (each fails its running trial and its run), then kill those that do not stop."""
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for worker in workers:
        try:
            worker.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.process.kill()
        worker.close()


def _answer(finished: list[tuple[_Worker, int]]) -> int:
    """Print the answer of the last worker that completed (0 or 1); otherwise the first worker's error."""
    completed = [(worker, code) for worker, code in finished if code in (0, 1)]
    if not completed:
        worker, code = next(((w, c) for w, c in finished if c == 2), finished[0])
        tail = worker.console.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        print(f"mlperf-track tune: worker {worker.index} failed ({code}): {tail[0]}", file=sys.stderr)
        return code if code > 0 else 1
    worker, code = completed[-1]
    sys.stdout.write(worker.answer.read_text(errors="replace"))
    return code
