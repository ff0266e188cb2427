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
from mlperf_track.cli import parsers as p
from mlperf_track.cli.options import read
from mlperf_track.errors import ConfigError, MissingDependencyError
from mlperf_track.tuning.config import MAX_QPS, TuneConfig, is_auto, is_none

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
    """Add the ``tune`` subcommand: the shared options from the table, plus the study's own settings."""
    from mlperf_track.cli.options import add_options

    parser = subparsers.add_parser(
        "tune", help="search the fastest feasible configuration with Optuna", description=__doc__
    )
    add_options(parser, "tune")
    parser.add_argument(
        "--backend", default=None, help=argparse.SUPPRESS
    )  # MODULE:FACTORY(TuneConfig) -> TuningBackend
    parser.set_defaults(func=run, keeps_log=True)


def _batch_sizes(text: str) -> str:
    """``auto``, ``max:N`` or a list, checked now (the study resolves ``auto`` for the device later)."""
    if is_auto(text):
        return text
    if not text.strip().lower().startswith("max:"):
        p.int_list("--batch-sizes", text)  # the CLI's list rules (no empty items), as for the other commands
    from mlperf_track.tuning.config import parse_batch_sizes

    parse_batch_sizes(text, "cpu")  # the syntax of max:N; the device only matters for auto
    return text


def _threads(args: argparse.Namespace) -> tuple[int, ...]:
    if is_auto(args.threads):
        import os

        from mlperf_track.tuning.config import powers_of_two

        return powers_of_two(os.cpu_count() or 1)
    return tuple(read(args, "threads") or ())


def _option_values(args: argparse.Namespace) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """``--search-options KEY=V1|V2`` (and ``--compile-modes``, which is ``compile_mode=...``)."""
    values = {
        key: tuple(item.strip() for item in text.split("|") if item.strip())
        for key, text in read(args, "search_options") or ()
    }
    modes = read(args, "compile_modes")
    if modes:
        values["compile_mode"] = tuple(modes)
    return tuple(values.items())


#: Options whose study setting has another name; the rest pass by name to :meth:`TuneConfig.create`.
_RENAMED = {
    "max_time": "max_time_s",
    "accuracy": "measure_accuracy",
    "heartbeat_interval": "heartbeat_interval_s",
    "grace_period": "grace_period_s",
    "time_budget": "time_budget_s",
    "short_time": "short_time_s",
    "experiment_name": "experiment",
}
#: Options read here by hand (raw text or several flags into one setting).
_BY_HAND = frozenset({
    "model", "batch_sizes", "threads", "storage", "storage_password_file", "study_name", "search_options",
    "compile_modes", "workers",
})  # fmt: skip


def _storage(args: argparse.Namespace) -> str | None:
    """The storage URL: ``--storage`` (``auto``: ``$MLPERF_TRACK_STORAGE`` or SQLite) with its password file."""
    from mlperf_track.tuning.storage import storage_from_flags

    return storage_from_flags(args.storage, read(args, "storage_password_file"))


def config_from_args(args: argparse.Namespace, experiment: str | None = None) -> TuneConfig:
    """Build and validate the :class:`TuneConfig` of the flags (``auto``/``none`` as MLproject passes them).

    Every option of the table that ``tune`` takes reaches the study by its name (a pipeline option added to
    ``tune``'s commands needs nothing here); ``auto`` is left to :meth:`TuneConfig.create`, which resolves it
    for the device, and ``--options`` is checked against what the selected runtimes and variants declare.

    Args:
        args: The parsed flags.
        experiment: The MLflow experiment (see :func:`mlperf_track.tracking.setup.experiment_for`), or ``None``
            for ``--experiment-name`` as given.
    """
    from mlperf_track.cli.options import options_for
    from mlperf_track.pipeline.options import check_declared_options

    values: dict[str, object] = {}
    for option in options_for("tune"):
        if option.name in _BY_HAND:
            continue
        value = read(args, option.name)
        explicit_none = option.accepts_none and p.is_none(getattr(args, option.name, None))
        if value is not None or explicit_none:
            values[_RENAMED.get(option.name, option.name)] = value
    optional = {
        "storage": _storage(args),
        "study_name": None if is_auto(args.study_name) or is_none(args.study_name) else args.study_name,
        "experiment": experiment or values.pop("experiment", None),
    }
    config = TuneConfig.create(
        read(args, "model"),
        **values,
        **{key: value for key, value in optional.items() if value is not None},
        batch_sizes=_batch_sizes(args.batch_sizes),
        threads=_threads(args),
        option_values=_option_values(args),
    )
    check_declared_options(config.pipeline)
    return config


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
    from mlperf_track.tracking.setup import check_tracking_store, experiment_for, resolve_tracking_uri
    from mlperf_track.tuning.runner import run_tune

    if not args.debug:  # the tuner logs one line per trial itself
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = config_from_args(args)
    check_tracking_store(resolve_tracking_uri())
    config = config.with_search(experiment=experiment_for(config.search.experiment, config.pipeline.model))
    if config.search.objective == MAX_QPS:
        return run_max_qps(args, config)
    if read(args, "workers") != 1:
        from mlperf_track.cli.tune_workers import supervise

        return supervise(args, config)
    backend = _backend_factory(args.backend)(config) if args.backend else None
    outcome = run_tune(config, backend)
    _log_the_log(outcome, getattr(args, "log_file", None))
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(render_answer(outcome))
    print_tune_answer(outcome, console)
    console.print(render_costs(outcome))
    _print_run(outcome, console)
    summary = outcome.summary
    if not summary.found:
        console.print(
            f"[red]no feasible configuration[/red] in study {summary.study_name}: {summary.n_infeasible} trials broke "
            f"a limit or ran out of memory, {summary.counts.get('FAIL', 0)} failed (see the trials table in MLflow)"
        )
        return 1
    return 0


def run_max_qps(args: argparse.Namespace, config: TuneConfig) -> int:
    """``--objective max_qps``: print each trial's max_qps and the best deployment; 1 when no trial passed."""
    from mlperf_track.tuning.load_study import run_max_qps_study

    if read(args, "workers") != 1:
        raise ConfigError("--workers", args.workers, "1 with --objective max_qps (its trials share one machine)")
    outcome = run_max_qps_study(config)
    console = Console(width=None if sys.stdout.isatty() else 160)
    table = Table(title=f"{config.pipeline.model}: max_qps under p99 <= {config.search.latency_bound_ms:g} ms")
    for header in ("trial", "configuration", "batching", "workers", "max_qps", "outcome"):
        table.add_column(header, justify="right" if header in ("trial", "workers", "max_qps") else "left")
    for trial in outcome.study.trials:
        value = f"{trial.values[0]:.4g}" if trial.values else "-"
        outcome_text = str(trial.user_attrs.get("outcome", trial.state.name.lower()))
        params = trial.params
        table.add_row(
            str(trial.number), str(params.get("config", "")), str(params.get("batching", "")),
            str(params.get("load_workers", "")), value, outcome_text,
        )  # fmt: skip
    console.print(table)
    if outcome.best is None:
        console.print("[red]no trial found a Server rate whose p99 stayed under the bound[/red]")
        return 1
    best = outcome.best
    console.print(
        f"best: {best.user_attrs.get('case')} with {best.params.get('batching')}, {best.params.get('load_workers')} "
        f"workers: max_qps {best.values[0]:.4g} queries/s (trial {best.number})",
        highlight=False,
    )
    if outcome.run_id is not None:
        console.print(f"parent run {outcome.run_id}")
    return 0


def _print_run(outcome: TuneOutcome, console: Console) -> None:
    """Where the study was logged, as ``run`` says it (the parent run id)."""
    if outcome.run_id is None:
        return
    import mlflow

    run = mlflow.get_run(outcome.run_id)
    experiment = mlflow.get_experiment(run.info.experiment_id)
    console.print(f"logged to {mlflow.get_tracking_uri()}: experiment {experiment.name}, parent run {outcome.run_id}")


def render_costs(outcome: TuneOutcome) -> str:
    """One line: how the study spent its trials and its time, and why it stopped."""
    summary = outcome.summary
    frame = outcome.frame
    prepare = float(frame["prepare_s"].fillna(0).sum()) if "prepare_s" in frame else 0.0
    measure = float(frame["measure_s"].fillna(0).sum()) if "measure_s" in frame else 0.0
    ends = [trial.user_attrs.get("outcome") for trial in outcome.study.trials]
    over = ends.count("over_budget")
    return (
        f"study {summary.study_name}: {summary.n_trials} trials ({summary.n_measured} measured in full, "
        f"{ends.count('pruned')} stopped after a short measurement, "
        + (f"{over} not started for the time budget, " if over else "")
        + f"{summary.n_reused} reused from earlier runs) in "
        f"{outcome.wall_s:.0f} s ({prepare:.0f} s preparing, {measure:.0f} s measuring); stopped by "
        f"{outcome.stop_reason}"
    )


def _log_the_log(outcome: TuneOutcome, log_file: Path | None) -> None:
    """Attach the log file to the study's parent run (as ``logs/mlperf_track.log``)."""
    run_id = outcome.run_id
    if log_file is not None and run_id:
        from mlperf_track.tracking.pipeline_run import log_log_file

        log_log_file(run_id, log_file)


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
