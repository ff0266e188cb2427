"""Search efficiency of the tuner: the default search (TPE) against an exhaustive grid, on one fixed space.

Target: TPE reaches a configuration within 3% of the grid's optimum with at most 25% of the grid's trials,
averaged over seeds.

How it is made repeatable: the grid (a small CPU model; default resnet18 at 32 px, batch 1..128 x fp32/bf16/
fp16 x eager/compile = 48 points) is measured ONCE with the real engine, through the same backend the tuner
uses (:class:`~mlperf_track.tuning.backend.SessionBackend`), with short timing. Those measured results are then
replayed as the objective table for every sampler and seed: each trial runs the real tuner (``run_tune``:
search space, objective, constraints, duplicate handling, budget), only ``measure`` returns the recorded
result instead of timing again. The grid sampler on the table finds the table's optimum by construction; the
question is how close TPE (and, for reference, random search) gets with a quarter of the trials. Measurement
noise is therefore frozen into the table: the comparison is between search strategies, not between runs.

Usage::

    python benchmarks/search_efficiency.py                       # measure the grid (minutes), 10 seeds
    python benchmarks/search_efficiency.py --quick               # 18 points, short timing, 3 seeds (~1 min)
    python benchmarks/search_efficiency.py --table grid.json     # reuse (or save) the measured grid
    python benchmarks/search_efficiency.py --markdown docs/search_efficiency.md
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

try:
    import mlperf_track  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`: use the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optuna
from rich.console import Console
from rich.table import Table

from mlperf_track.engine.result import BenchmarkResult
from mlperf_track.pipeline.events import CaseOutcome
from mlperf_track.spec import CaseSpec, TimingConfig
from mlperf_track.tuning.config import TuneConfig
from mlperf_track.tuning.objective import TARGETS, Limits, is_feasible
from mlperf_track.tuning.runner import run_tune
from mlperf_track.tuning.space import Choice, SearchSpace

logger = logging.getLogger("search_efficiency")

TARGET_GAP = 0.03
TARGET_BUDGET_FRACTION = 0.25


@dataclass(frozen=True)
class Setup:
    """The fixed space and how it is measured."""

    model: str
    image_size: int
    runtimes: tuple[str, ...]
    precisions: tuple[str, ...]
    batch_sizes: str
    timing: TimingConfig
    seeds: int


FULL = Setup(
    "resnet18",
    32,
    ("eager", "compile"),
    ("fp32", "bf16", "fp16"),
    "max:128",
    TimingConfig(warmup_iters=3, warmup_s=0.1, min_iters=10, max_iters=500, max_time_s=1.0, target_rel_ci=0.02),
    seeds=10,
)
QUICK = Setup(
    "resnet18",
    32,
    ("eager", "onnxruntime"),
    ("fp32", "bf16"),
    "max:32",
    TimingConfig(warmup_iters=1, warmup_s=0.0, min_iters=3, max_iters=30, max_time_s=0.15, target_rel_ci=0.2),
    seeds=3,
)


class ReplayBackend:
    """A :class:`~mlperf_track.tuning.backend.TuningBackend` that returns recorded results."""

    device = "cpu"
    measures_accuracy = False

    def __init__(self, space: SearchSpace, template: CaseSpec, results: dict[str, BenchmarkResult]) -> None:
        self.space, self._template, self.results = space, template, results
        self.measured: list[str] = []

    def search_space(self) -> SearchSpace:
        return self.space

    def template(self) -> CaseSpec:
        return self._template

    def measure(self, case: CaseSpec) -> CaseOutcome:
        self.measured.append(case.name)
        result = self.results.get(case.name)
        if result is None:
            return CaseOutcome(case, error=RuntimeError(f"{case.name} failed when the grid was measured"))
        return CaseOutcome(case, result=result)

    def close(self) -> None:
        """Nothing to release."""


def measure_grid(setup: Setup) -> dict[str, Any]:
    """Measure every point of the space once with the real engine; returns the JSON-ready table."""
    from mlperf_track.tuning.backend import SessionBackend

    config = TuneConfig(
        model=setup.model,
        device="cpu",
        image_size=setup.image_size,
        runtimes=setup.runtimes,
        precisions=setup.precisions,
        batch_sizes=setup.batch_sizes,
        timing=setup.timing,
        dataset="synthetic",
        storage="none",
    )
    backend = SessionBackend(config)
    try:
        space = backend.search_space()
        template = backend.template()
        results, started = [], time.perf_counter()
        for index, point in enumerate(space.points(), 1):
            outcome = backend.measure(point.to_case(template))
            logger.info(
                "[%d/%d] %s: %s",
                index,
                space.size,
                point.to_case(template).name,
                "failed"
                if outcome.result is None
                else f"{outcome.result.metrics.get(TARGETS['throughput'].metric, 0):.1f}/s",
            )
            if outcome.result is not None:
                results.append(replace(outcome.result, samples_ms=()).to_dict())
    finally:
        backend.close()
    return {
        "setup": {"model": setup.model, "image_size": setup.image_size, "timing": setup.timing.to_dict()},
        "space": space.to_dict(),
        "template": template.to_dict(),
        "results": results,
        "measure_s": time.perf_counter() - started,
    }


def load_replay(table: dict[str, Any]) -> tuple[SearchSpace, CaseSpec, dict[str, BenchmarkResult]]:
    """The space, template and results of a measured table."""
    data = table["space"]
    space = SearchSpace(
        tuple(Choice.from_key(key) for key in data["choices"]), tuple(data["batch_sizes"]), tuple(data["threads"])
    )
    results = {result.case.name: result for result in map(BenchmarkResult.from_dict, table["results"])}
    return space, CaseSpec.from_dict(table["template"]), results


@dataclass
class SearchRun:
    """One sampler, one seed."""

    sampler: str
    seed: int
    trials: int
    measured: int
    best: float | None
    trials_to_target: int | None


def table_optimum(
    space: SearchSpace, template: CaseSpec, results: dict[str, BenchmarkResult], objective: str, limits: Limits
) -> float:
    """The best feasible value of the table (what exhaustive search must find)."""
    target = TARGETS[objective]
    values = []
    for point in space.points():
        result = results.get(point.to_case(template).name)
        if result is None or target.metric not in result.metrics:
            continue
        constraints, _ = limits.constraints(result.metrics, "cpu") if limits.memory_limit_mb else ({}, {})
        if all(value <= 0 for value in constraints.values()):
            values.append(result.metrics[target.metric])
    return max(values) if target.direction == "maximize" else min(values)


def run_search(
    table: dict[str, Any],
    sampler: str,
    seed: int,
    *,
    budget: int,
    objective: str,
    memory_limit_mb: float | None,
    optimum: float,
) -> SearchRun:
    """Replay one search with the real tuner and summarise it."""
    space, template, results = load_replay(table)
    backend = ReplayBackend(space, template, results)
    config = TuneConfig(
        model=template.model,
        device="cpu",
        objective=objective,
        n_trials=budget,
        sampler=sampler,
        seed=seed,
        storage="none",
        memory_limit_mb=memory_limit_mb,
    )
    outcome = run_tune(config, backend, track=False)
    maximize = TARGETS[objective].direction == "maximize"
    best: float | None = None
    reached: int | None = None
    for index, trial in enumerate(sorted(outcome.study.trials, key=lambda t: t.number), 1):
        if is_feasible(trial) and trial.values:
            value = float(trial.values[0])
            best = value if best is None else (max(best, value) if maximize else min(best, value))
        if reached is None and best is not None and gap(best, optimum, maximize) <= TARGET_GAP:
            reached = index
    return SearchRun(sampler, seed, len(outcome.study.trials), len(set(backend.measured)), best, reached)


def gap(value: float, optimum: float, maximize: bool) -> float:
    """Relative distance to the optimum (0 = optimal)."""
    return (optimum - value) / optimum if maximize else (value - optimum) / optimum


def summarise(runs: list[SearchRun], optimum: float, maximize: bool, grid_size: int) -> list[dict[str, Any]]:
    """One row per sampler."""
    rows = []
    for sampler in dict.fromkeys(run.sampler for run in runs):
        group = [run for run in runs if run.sampler == sampler]
        gaps = [gap(run.best, optimum, maximize) if run.best is not None else math.inf for run in group]
        reached = [run.trials_to_target for run in group if run.trials_to_target is not None]
        rows.append(
            {
                "sampler": sampler,
                "seeds": len(group),
                "trials": statistics.mean(run.trials for run in group),
                "trials_pct_of_grid": 100 * statistics.mean(run.trials for run in group) / grid_size,
                "measured": statistics.mean(run.measured for run in group),
                "best_mean": statistics.mean(run.best for run in group if run.best is not None),
                "gap_mean_pct": 100 * statistics.mean(gaps),
                "gap_worst_pct": 100 * max(gaps),
                "within_target": f"{sum(g <= TARGET_GAP for g in gaps)}/{len(group)}",
                "trials_to_target": statistics.mean(reached) if reached else None,
            }
        )
    return rows


COLUMNS = (
    ("sampler", "sampler", "{}"),
    ("seeds", "seeds", "{}"),
    ("trials", "trials", "{:.0f}"),
    ("% of grid", "trials_pct_of_grid", "{:.0f}%"),
    ("distinct measured", "measured", "{:.1f}"),
    ("best (mean)", "best_mean", "{:.1f}"),
    ("gap mean", "gap_mean_pct", "{:.2f}%"),
    ("gap worst", "gap_worst_pct", "{:.2f}%"),
    ("within 3%", "within_target", "{}"),
    ("trials to 3% (mean)", "trials_to_target", "{:.1f}"),
)


def _cell(row: dict[str, Any], key: str, fmt: str) -> str:
    return "-" if row[key] is None else fmt.format(row[key])


def render(rows: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title)
    for header, _, _ in COLUMNS:
        table.add_column(header, justify="left" if header == "sampler" else "right")
    for row in rows:
        table.add_row(*(_cell(row, key, fmt) for _, key, fmt in COLUMNS))
    return table


def markdown(rows: list[dict[str, Any]], title: str, verdict: str, notes: list[str]) -> str:
    lines = [f"# {title}", "", "| " + " | ".join(h for h, _, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(row, key, fmt) for _, key, fmt in COLUMNS) + " |" for row in rows]
    return "\n".join([*lines, "", f"**{verdict}**", "", *[f"- {note}" for note in notes], ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small space, short timing, 3 seeds")
    parser.add_argument("--table", type=Path, default=None, help="measured grid JSON: read if present, else written")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per sampler")
    parser.add_argument("--objective", default="throughput", choices=("throughput", "latency"))
    parser.add_argument("--memory-limit-mb", type=float, default=None)
    parser.add_argument("--markdown", type=Path, default=None, help="also write the results as markdown here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("mlperf_track", "optuna", "torch"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    setup = QUICK if args.quick else FULL
    if args.table is not None and args.table.is_file():
        table = json.loads(args.table.read_text(encoding="utf-8"))
        logger.info("replaying the grid measured in %s", args.table)
    else:
        logger.info("measuring the grid once with the real engine (%s at %d px)", setup.model, setup.image_size)
        table = measure_grid(setup)
        if args.table is not None:
            args.table.write_text(json.dumps(table, indent=1), encoding="utf-8")
    space, template, results = load_replay(table)
    limits = Limits(memory_limit_mb=args.memory_limit_mb)
    maximize = TARGETS[args.objective].direction == "maximize"
    optimum = table_optimum(space, template, results, args.objective, limits)
    budget = max(1, math.floor(TARGET_BUDGET_FRACTION * space.size))
    seeds = args.seeds or setup.seeds
    common: dict[str, Any] = {"objective": args.objective, "memory_limit_mb": args.memory_limit_mb, "optimum": optimum}
    runs = [run_search(table, "grid", 0, budget=space.size, **common)]
    for sampler in ("tpe", "random"):
        runs += [run_search(table, sampler, seed, budget=budget, **common) for seed in range(seeds)]
    rows = summarise(runs, optimum, maximize, space.size)
    tpe = next(row for row in rows if row["sampler"] == "tpe")
    met = tpe["gap_mean_pct"] <= 100 * TARGET_GAP and tpe["trials_pct_of_grid"] <= 100 * TARGET_BUDGET_FRACTION
    verdict = (
        f"target {'MET' if met else 'MISSED'}: TPE mean gap {tpe['gap_mean_pct']:.2f}% (<= 3%) with "
        f"{tpe['trials_pct_of_grid']:.0f}% of the grid's trials (<= 25%)"
    )
    if args.quick:
        verdict += " -- quick smoke run: too small a grid and too short a timing to judge the target"
    title = (
        f"Search efficiency: {table['setup']['model']} at {table['setup']['image_size']} px, "
        f"{space.size}-point grid ({len(space.choices)} configurations x {len(space.batch_sizes)} batch sizes), "
        f"objective {args.objective}"
    )
    notes = [
        f"grid optimum {optimum:.2f} ({TARGETS[args.objective].metric}); the grid was measured once "
        f"({table.get('measure_s', 0):.0f} s) and replayed for every sampler and seed",
        f"configurations: {', '.join(choice.key for choice in space.choices)}",
        f"batch sizes: {', '.join(map(str, space.batch_sizes))}; points that failed to measure: "
        f"{space.size - len(results)}",
    ]
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(render(rows, title))
    console.print(verdict)
    for note in notes:
        console.print(f"- {note}")
    if args.markdown is not None:
        args.markdown.write_text(markdown(rows, title, verdict, notes), encoding="utf-8")
    return 0 if met or args.quick else 1


if __name__ == "__main__":
    sys.exit(main())
