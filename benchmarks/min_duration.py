"""How long must a timed window be before two runs of one configuration agree? (The min-duration study.)

The median's confidence interval of one run says how precisely that run knows its own median; it says nothing
about the next run, which may land on a different core placement, cache state or neighbour load. This script
measures the *between-run* spread of the engine's p50 as a function of the timed window's length, which is
what ``TimingConfig.min_time_s`` is chosen from (see the comment next to its default in
``mlperf_track/pipeline/defaults.py``).

Design: ``--processes`` fresh worker processes (a process restart is part of what differs between two runs),
each building the same model with the same seed (identical weights: a random-init model's speed depends on its
weights), then measuring every window length in interleaved rounds (0.25 s, 0.5 s, ..., 4 s, 0.25 s, ...),
so drift of the machine spreads evenly over the window lengths. Each measurement is the engine's
``measure_callable`` with ``min_time_s = max_time_s = window``: a fixed-length window.

For every window length the table shows the between-process spread of p50 (the sd of log p50 across
processes within one round, pooled over the rounds: what ``compare --noise-floor`` needs; runs of one process
are not independent, so pooling them with the others would understate it), the spread between the rounds of
one process (within-process), the largest pairwise difference, and the share of ordered pairs of runs in
different processes whose p50 differ by more than 3% (what a naive ``compare --fail-on p50:3%`` on point
estimates would call a regression). Usage::

    python benchmarks/min_duration.py --threads 1        # resnet18 64 px bs1, 8 processes x 2 rounds (~4 min)
    python benchmarks/min_duration.py --quick            # tinycnn-sized smoke run (< 1 min)
    python benchmarks/min_duration.py --markdown benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import logging
import math
import os
import shlex
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAIR_LIMIT = 0.03


@dataclass(frozen=True)
class Run:
    """One fixed-length measurement."""

    process: int
    round: int
    window_s: float
    p50_ms: float
    count: int
    ci_rel_width: float


def _worker(args: argparse.Namespace) -> None:
    """Build the model, then measure every window in interleaved rounds; print one JSON line per run."""
    sys.path.insert(0, str(ROOT))
    import torch
    import torchvision

    from mlperf_track.engine.measure import measure_callable
    from mlperf_track.spec import TimingConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = getattr(torchvision.models, args.model)(weights=None).eval()
    inputs = torch.randn(args.batch_size, 3, args.image_size, args.image_size, generator=torch.Generator())
    windows = [float(w) for w in args.windows.split(",")]
    with torch.inference_mode():
        for _ in range(5):
            model(inputs)
        for round_index in range(args.rounds):
            for window in windows:
                timing = TimingConfig(
                    warmup_iters=3,
                    warmup_s=0.1,
                    min_iters=5,
                    max_iters=1_000_000,
                    min_time_s=window,
                    max_time_s=window,
                    target_rel_ci=0.5,
                )  # target 0.5: the window, not the CI, ends the loop
                result = measure_callable(
                    lambda: model(inputs), device="cpu", batch_size=args.batch_size, timing=timing, monitors=False
                )
                run = Run(
                    args.process,
                    round_index,
                    window,
                    result.stats.p50,
                    result.stats.count,
                    result.stats.median_ci_rel_width,
                )
                print(json.dumps(run.__dict__), flush=True)


def _spawn(args: argparse.Namespace, process: int) -> list[Run]:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        "--process",
        str(process),
        "--model",
        args.model,
        "--image-size",
        str(args.image_size),
        "--batch-size",
        str(args.batch_size),
        "--windows",
        args.windows,
        "--rounds",
        str(args.rounds),
    ]
    if args.threads:
        command += ["--threads", str(args.threads)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    output = subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout
    return [Run(**json.loads(line)) for line in output.splitlines() if line.startswith("{")]


@dataclass(frozen=True)
class Row:
    """The between-run figures of one window length."""

    window_s: float
    runs: int
    median_p50_ms: float
    cv: float
    within_cv: float
    max_range: float
    pairs_over_limit: float
    median_count: int
    median_ci_width: float


def _pooled_sd(groups: list[list[float]]) -> float:
    """Pooled sd of the logs within each group (groups of one value add nothing)."""
    squares, dof = 0.0, 0
    for values in groups:
        if len(values) > 1:
            logs = [math.log(value) for value in values]
            squares += statistics.variance(logs) * (len(logs) - 1)
            dof += len(logs) - 1
    return math.sqrt(squares / dof) if dof else float("nan")


def summarise(runs: list[Run]) -> list[Row]:
    """One row per window length."""
    rows = []
    for window in sorted({run.window_s for run in runs}):
        these = [run for run in runs if run.window_s == window]
        by_round = [[r.p50_ms for r in these if r.round == i] for i in sorted({r.round for r in these})]
        by_process = [[r.p50_ms for r in these if r.process == i] for i in sorted({r.process for r in these})]
        pairs = [(a.p50_ms, b.p50_ms) for a, b in itertools.permutations(these, 2) if a.process != b.process]
        p50s = [run.p50_ms for run in these]
        rows.append(
            Row(
                window_s=window,
                runs=len(p50s),
                median_p50_ms=statistics.median(p50s),
                cv=_pooled_sd(by_round),
                within_cv=_pooled_sd(by_process),
                max_range=max(p50s) / min(p50s) - 1.0,
                pairs_over_limit=sum(b / a - 1 > PAIR_LIMIT for a, b in pairs) / len(pairs) if pairs else float("nan"),
                median_count=int(statistics.median(run.count for run in these)),
                median_ci_width=statistics.median(run.ci_rel_width for run in these),
            )
        )
    return rows


HEADERS = (
    "window s",
    "runs",
    "median p50 ms",
    "between-process sd",
    "within-process sd",
    "max/min-1",
    "pairs >+3%",
    "calls/run",
    "within-run CI",
)


def _cells(row: Row) -> list[str]:
    return [
        f"{row.window_s:g}",
        str(row.runs),
        f"{row.median_p50_ms:.3f}",
        f"{row.cv:.2%}",
        f"{row.within_cv:.2%}" if math.isfinite(row.within_cv) else "one round",
        f"{row.max_range:.2%}",
        f"{row.pairs_over_limit:.0%}",
        str(row.median_count),
        f"{row.median_ci_width:.2%}" if math.isfinite(row.median_ci_width) else "too few samples",
    ]


def render(rows: list[Row], title: str) -> str:
    """The table as Markdown (printed and optionally appended to a file)."""
    lines = [
        title,
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "|".join("---" for _ in HEADERS) + "|",
        *("| " + " | ".join(_cells(row)) + " |" for row in rows),
    ]
    return "\n".join(lines)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--windows", default="0.25,0.5,1,2,4", help="window lengths in seconds, comma-separated")
    parser.add_argument("--processes", type=int, default=8, help="fresh worker processes (default 8, at least 8)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per process (default 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="small model, short windows, 3 processes")
    parser.add_argument("--markdown", type=Path, default=None, help="append the table to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--process", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.model, args.image_size, args.windows, args.processes, args.rounds = ("resnet18", 32, "0.1,0.2", 3, 1)
    elif args.processes < 8:
        parser.error(f"--processes {args.processes}: at least 8 (fewer underestimate the spread between runs)")
    return args


def main(argv: list[str] | None = None) -> int:
    """Spawn the workers, print the table (and append it to ``--markdown``)."""
    argv = sys.argv[1:] if argv is None else argv
    args = _parse(argv)
    if args.worker:
        _worker(args)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    runs = [run for process in range(args.processes) for run in _spawn(args, process)]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    title = (
        f"## Min-duration study, {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}\n\n"
        f"- {args.model} {args.image_size} px batch {args.batch_size}, threads {args.threads or 'torch default'}, "
        f"{args.processes} processes x {args.rounds} interleaved rounds, {os.cpu_count()} logical CPUs, "
        f"load average after the run {load:.2f}\n"
        f"- command: `{shlex.join(['python', 'benchmarks/min_duration.py', *argv])}`"
    )
    text = render(summarise(runs), title)
    print(text)
    if args.markdown:
        with args.markdown.open("a", encoding="utf-8") as handle:
            handle.write("\n" + text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
