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
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from mlperf_track import metrics as m
from mlperf_track.cli import parsers as p
from mlperf_track.cli.options import read
from mlperf_track.errors import ConfigError, MissingDependencyError
from mlperf_track.tuning.config import TuneConfig, is_auto, is_none

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
    """``auto``, ``max:N`` or a list, checked now (TuneConfig resolves ``auto`` for the device later)."""
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


def _storage(args: argparse.Namespace) -> str | None:
    """The storage URL: ``--storage`` (``auto``: ``$MLPERF_TRACK_STORAGE`` or SQLite) with its password file."""
    from mlperf_track.tuning.storage import storage_from_flags

    return storage_from_flags(args.storage, read(args, "storage_password_file"))


def _one_length(args: argparse.Namespace, name: str) -> int:
    """A text length of the study: trials vary the configuration, not the workload, so one value."""
    lengths = read(args, name)
    if len(lengths) != 1:
        flag = "--" + name.replace("_", "-")
        raise ConfigError(flag, ",".join(map(str, lengths)), "one length: every trial of a study runs the same shape")
    return int(lengths[0])


def config_from_args(args: argparse.Namespace, experiment: str | None = None) -> TuneConfig:
    """Build and validate the :class:`TuneConfig` of the flags (``auto``/``none`` as MLproject passes them).

    Args:
        args: The parsed flags.
        experiment: The MLflow experiment (see :func:`mlperf_track.tracking.setup.experiment_for`), or ``None``
            for ``--experiment-name`` as given.
    """
    return TuneConfig(
        model=read(args, "model"),
        weights=read(args, "weights"),
        device=read(args, "device") or "auto",
        objective=read(args, "objective"),
        n_trials=read(args, "n_trials"),
        batch_sizes=_batch_sizes(args.batch_sizes),
        precisions=tuple(read(args, "precisions") or ()),
        runtimes=tuple(read(args, "runtimes") or ()),
        variants=tuple(read(args, "variants") or ()),
        compile_modes=tuple(read(args, "compile_modes") or ()),
        threads=_threads(args),
        image_size=read(args, "image_size"),
        dataset=read(args, "dataset") or "auto",
        epochs=read(args, "epochs"),
        seq_len=_one_length(args, "seq_lens"),
        prompt_len=_one_length(args, "prompt_lens"),
        output_len=_one_length(args, "output_lens"),
        memory_limit_mb=read(args, "memory_limit_mb"),
        p99_slo_ms=read(args, "p99_slo_ms"),
        max_accuracy_drop=read(args, "max_accuracy_drop"),
        storage=_storage(args),
        study_name=None if is_auto(args.study_name) or is_none(args.study_name) else args.study_name,
        sampler=read(args, "sampler") or "auto",
        seed=read(args, "seed"),
        experiment=experiment or read(args, "experiment_name"),
        max_time_s=read(args, "max_time"),
        heartbeat_interval_s=read(args, "heartbeat_interval"),
        grace_period_s=read(args, "grace_period"),
        output_dir=Path(read(args, "output_dir")),
        trust_pickle=bool(read(args, "trust_pickle")),
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
    from mlperf_track.tracking.setup import check_tracking_store, experiment_for, resolve_tracking_uri
    from mlperf_track.tuning.runner import run_tune

    if not args.debug:  # the tuner logs one line per trial itself
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = config_from_args(args)
    check_tracking_store(resolve_tracking_uri())
    config = replace(config, experiment=experiment_for(config.experiment, config.model))
    if read(args, "workers") != 1:
        from mlperf_track.cli.tune_workers import supervise

        return supervise(args, config)
    backend = _backend_factory(args.backend)(config) if args.backend else None
    outcome = run_tune(config, backend)
    _log_the_log(outcome, getattr(args, "log_file", None))
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
