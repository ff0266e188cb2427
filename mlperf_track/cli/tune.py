"""``mlperf-track tune``: an Optuna study over batch size, precision and runtime, logged to MLflow.

Exit codes: 0 when a feasible configuration was found, 1 when the study ended without one (every trial broke a
limit, ran out of memory or failed: the parent run is tagged ``tune.result=no_feasible_configuration``), 2 for
bad input (a memory limit <= 0, an unknown objective, ``--n-trials`` <= 0, an unreachable storage).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from mlperf_track import metrics as m
from mlperf_track.errors import ConfigError, MissingDependencyError
from mlperf_track.spec import DEVICES, PRECISIONS, check_choice, parse_int_list, parse_name_list
from mlperf_track.tuning.config import OBJECTIVES, SAMPLERS, TuneConfig, is_auto, is_none

if TYPE_CHECKING:
    from mlperf_track.tuning.backend import TuningBackend
    from mlperf_track.tuning.runner import TuneOutcome

logger = logging.getLogger(__name__)

#: Columns of the answer table: (header, metric key, format).
COLUMNS = (
    ("samples/s", m.THROUGHPUT, "{:.1f}"),
    ("p99 ms", m.LATENCY_P99, "{:.2f}"),
    ("RSS MB", m.CPU_RSS_PEAK, "{:.0f}"),
    ("GPU MB", m.GPU_PEAK_ALLOCATED, "{:.0f}"),
    ("top-1", m.ACCURACY_TOP1, "{:.3f}"),
)


def register(subparsers: Any) -> None:
    """Add the ``tune`` subcommand."""
    parser = subparsers.add_parser(
        "tune", help="search the fastest feasible configuration with Optuna", description=__doc__
    )
    add = parser.add_argument
    add("--model", required=True, help="torchvision name, model file, models:/ or runs:/ URI")
    add("--weights", default=None, help="weights file for a torchvision model")
    add("--device", default="auto", help="auto, cpu or cuda")
    add("--image-size", default="auto", help="input height and width (auto: 64 on cpu, 224 on cuda)")
    add("--objective", default="throughput", help=f"one of {', '.join(OBJECTIVES)}")
    add("--n-trials", default="30", help="trials the study holds when it ends (shared by all workers)")
    add(
        "--memory-limit-mb",
        default="none",
        help="peak memory limit: on cuda the process's device memory (NVML peak, else torch's reserved or "
        "allocated peak), on cpu the process's peak RSS (Python and torch included)",
    )
    add("--p99-slo-ms", default="none", help="p99 latency limit per batch, in ms")
    add("--max-accuracy-drop", default="none", help="largest top-1 drop against the baseline (0.01 = 1 point)")
    add("--batch-sizes", default="auto", help="auto, max:N (powers of two up to N) or a list 1,2,4")
    add("--precisions", default="auto", help="comma-separated precisions (auto: what the runtimes run here)")
    add("--runtimes", default="auto", help="comma-separated runtimes (auto: the device's defaults)")
    add("--variants", default="none", help="variants to search besides the baseline (quantized, pruned, ...)")
    add("--compile-modes", default="none", help="torch.compile modes to search, e.g. default,max-autotune")
    add("--threads", default="none", help="CPU thread counts to search: a list, or auto (powers of two)")
    add("--sampler", default="auto", help=f"one of {', '.join(SAMPLERS)} (auto: TPE)")
    add("--storage", default="auto", help="none (memory), auto (sqlite optuna.db here) or a database URL")
    add("--study-name", default="auto", help="study to create or resume (auto: a new unique name)")
    add("--seed", default="0", help="seed for the sampler, data and inputs")
    add("--experiment", default="auto", help="MLflow experiment (auto: MLflow's default)")
    add("--dataset", default="auto", help="auto (digits when accuracy matters, else synthetic) or a dataset ref")
    add("--epochs", default="auto", help="fine-tuning epochs of the baseline on a labelled dataset")
    add("--max-time", default="auto", help="time cap per trial's timed window, in seconds")
    add("--output-dir", default=str(Path("mlperf_track_output") / "tune"), help="per-trial files")
    add("--heartbeat-interval", default="10", help="seconds between heartbeats of a running trial (databases)")
    add("--grace-period", default="30", help="a trial without heartbeat for this long is failed and retried")
    add("--backend", default=None, help=argparse.SUPPRESS)  # MODULE:FACTORY(TuneConfig) -> TuningBackend
    parser.set_defaults(func=run)


def _optional_number(parameter: str, text: str) -> float | None:
    if is_none(text) or is_auto(text):
        return None
    try:
        return float(text)
    except ValueError:
        raise ConfigError(parameter, text, "a positive number or none") from None


def _integer(parameter: str, text: str, allowed: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(parameter, text, allowed) from None


def _names(parameter: str, text: str, allowed: tuple[str, ...] | None = None) -> tuple[str, ...]:
    return () if is_auto(text) or is_none(text) else parse_name_list(parameter, text, allowed)


def _threads(text: str) -> tuple[int, ...]:
    if is_none(text):
        return ()
    if is_auto(text):
        import os

        from mlperf_track.tuning.config import powers_of_two

        return powers_of_two(os.cpu_count() or 1)
    return parse_int_list("--threads", text)


def config_from_args(args: argparse.Namespace) -> TuneConfig:
    """Build and validate the :class:`TuneConfig` of the flags (``auto``/``none`` as MLproject passes them)."""
    n_trials = _integer("--n-trials", args.n_trials, "a positive integer")
    seed = _integer("--seed", args.seed, "an integer >= 0")
    return TuneConfig(
        model=args.model,
        weights=args.weights,
        device=check_choice("--device", args.device, DEVICES),
        objective=check_choice("--objective", args.objective, OBJECTIVES),
        n_trials=n_trials,
        batch_sizes=args.batch_sizes,
        precisions=_names("--precisions", args.precisions, PRECISIONS),
        runtimes=_names("--runtimes", args.runtimes),
        variants=_names("--variants", args.variants),
        compile_modes=_names("--compile-modes", args.compile_modes),
        threads=_threads(args.threads),
        image_size=None
        if is_auto(args.image_size)
        else _integer("--image-size", args.image_size, "a positive integer"),
        dataset=args.dataset,
        epochs=None if is_auto(args.epochs) else _integer("--epochs", args.epochs, "an integer >= 0"),
        memory_limit_mb=_optional_number("--memory-limit-mb", args.memory_limit_mb),
        p99_slo_ms=_optional_number("--p99-slo-ms", args.p99_slo_ms),
        max_accuracy_drop=_optional_number("--max-accuracy-drop", args.max_accuracy_drop),
        storage=args.storage,
        study_name=None if is_auto(args.study_name) or is_none(args.study_name) else args.study_name,
        sampler=check_choice("--sampler", args.sampler, SAMPLERS),
        seed=seed,
        experiment=None if is_auto(args.experiment) or is_none(args.experiment) else args.experiment,
        max_time_s=_optional_number("--max-time", args.max_time),
        heartbeat_interval_s=_integer("--heartbeat-interval", args.heartbeat_interval, "a positive integer"),
        grace_period_s=_integer("--grace-period", args.grace_period, "an integer above --heartbeat-interval"),
        output_dir=Path(args.output_dir),
    )


def _backend_factory(spec: str) -> Callable[[TuneConfig], TuningBackend]:
    """``MODULE:FACTORY``: a callable that builds a :class:`TuningBackend` from the config."""
    module_name, _, attribute = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as error:
        raise ConfigError("--backend", spec, "MODULE:FACTORY", hint=str(error)) from None
    return factory


def run(args: argparse.Namespace) -> int:
    """Run this worker's share of the study; 0: a feasible configuration was found, 1: none was."""
    try:
        import optuna
    except ImportError:
        raise MissingDependencyError("optuna", "tune", "mlperf-track tune") from None

    from mlperf_track.cli.console import print_tune_answer
    from mlperf_track.tuning.runner import run_tune

    if not args.debug:  # the tuner logs one line per trial itself
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = config_from_args(args)
    backend = _backend_factory(args.backend)(config) if args.backend else None
    outcome = run_tune(config, backend)
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(render_answer(outcome))
    print_tune_answer(outcome, console)
    summary = outcome.summary
    if not summary.found:
        console.print(
            f"[red]no feasible configuration[/red] in study {summary.study_name}: {summary.n_infeasible} trials broke "
            f"a limit or ran out of memory, {summary.counts.get('FAIL', 0)} failed (see the trials table in MLflow)"
        )
        return 1
    return 0


def render_answer(outcome: TuneOutcome) -> Table:
    """The best feasible configuration, or the Pareto front, with its key metrics."""
    summary = outcome.summary
    title = "Pareto front" if summary.multi_objective else "best feasible configuration"
    counts = ", ".join(f"{count} {state.lower()}" for state, count in sorted(summary.counts.items()))
    table = Table(title=f"{title} of study {summary.study_name} ({counts}; {outcome.trials_run} run here)")
    for header in ("trial", "configuration", "batch", "threads", *(c[0] for c in COLUMNS)):
        table.add_column(header, justify="left" if header == "configuration" else "right")
    for trial in summary.best:
        metrics = trial.user_attrs.get("metrics", {}) or {}
        case = outcome.case_of(trial)
        cells = ["-" if metrics.get(key) is None else fmt.format(metrics[key]) for _, key, fmt in COLUMNS]
        table.add_row(
            str(trial.number),
            str(trial.params.get("config")),
            str(case.batch_size if case else "?"),
            str(case.num_threads if case and case.num_threads else "default"),
            *cells,
        )
    return table
