"""``mlperf-track run``: the whole pipeline, every case logged to MLflow as a nested run of one parent run.

Also the command of the MLproject's ``main`` and ``benchmark`` entry points. Device-dependent settings
(``--batch-size``, ``--precision``, ``--runtime``, ``--variants``, ``--image-size``, ``--epochs``) default to
``auto``: :func:`mlperf_track.pipeline.defaults.auto_defaults` picks them for the resolved device. ``none``
for ``--variants`` measures the baseline only. Exit codes: 0 when the pipeline completed (failed cases are
FAILED child runs), 1 when every case failed, 2 for bad input (the parent run, when ``mlflow run`` made one,
is FAILED with ``error.type``/``error.message`` tags), 130 on Ctrl-C or SIGTERM (open runs end KILLED).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlperf_track.cli.common import add_pipeline_arguments, pipeline_config_from_args, writable_file
from mlperf_track.errors import MlperfTrackError

if TYPE_CHECKING:
    from mlperf_track.pipeline.config import PipelineConfig

logger = logging.getLogger(__name__)

#: Flags whose ``auto`` value is replaced by the device's default: flag dest -> auto_defaults key.
AUTO_FLAGS = {
    "batch_size": "batch_sizes",
    "precision": "precisions",
    "runtime": "runtimes",
    "variants": "variants",
    "image_size": "image_size",
    "epochs": "epochs",
}
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def register(subparsers: Any) -> None:
    """Add the ``run`` subcommand."""
    parser = subparsers.add_parser(
        "run", help="run the pipeline and log every case to MLflow", description=__doc__.split("\n\n")[0]
    )
    add_run_arguments(parser)
    parser.set_defaults(func=run)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The pipeline flags with ``auto`` defaults, plus ``--experiment``, ``--profile`` and ``--output``."""
    add_pipeline_arguments(parser)
    parser.set_defaults(**{dest: "auto" for dest in AUTO_FLAGS})
    parser.add_argument("--experiment", default=None, help="MLflow experiment name (ignored inside mlflow run)")
    parser.add_argument(
        "--profile",
        nargs="?",
        const="true",
        default="false",
        help="also record a torch.profiler trace and flame graph per case (--profile, or --profile true|false)",
    )
    parser.add_argument("--output", default=None, help="also write every result as JSON to this file")


def _bool(parameter: str, text: str) -> bool:
    from mlperf_track.errors import ConfigError

    value = str(text).strip().lower()
    if value in _TRUE or value in _FALSE:
        return value in _TRUE
    raise ConfigError(parameter, text, "true or false")


def resolve_auto_flags(args: argparse.Namespace) -> argparse.Namespace:
    """A copy of ``args`` with every ``auto`` value of :data:`AUTO_FLAGS` replaced by the device's default."""
    from mlperf_track.engine.device import resolve_device
    from mlperf_track.pipeline.defaults import auto_defaults, is_auto
    from mlperf_track.spec import DEVICES, check_choice

    resolved = argparse.Namespace(**vars(args))
    defaults = auto_defaults(resolve_device(check_choice("--device", args.device, DEVICES)))
    for dest, key in AUTO_FLAGS.items():
        if is_auto(getattr(args, dest, None)):
            value = defaults[key]
            text = ",".join(str(item) for item in value) if isinstance(value, (tuple, list)) else str(value)
            setattr(resolved, dest, text)
    if str(getattr(args, "weights", None) or "").strip().lower() in ("none", "auto"):
        resolved.weights = None  # the MLproject passes "none" for "no weights file"
    return resolved


def run_config_from_args(args: argparse.Namespace) -> PipelineConfig:
    """Build and validate the pipeline configuration (``auto`` resolved for the device)."""
    return pipeline_config_from_args(resolve_auto_flags(args), profile=_bool("--profile", args.profile))


def record_bad_input(error: MlperfTrackError) -> None:
    """Inside ``mlflow run``, mark its run FAILED with the error's tags (elsewhere no run exists yet)."""
    if not os.environ.get("MLFLOW_RUN_ID"):
        return
    try:
        from mlperf_track.tracking.logging import mark_run_failed
        from mlperf_track.tracking.pipeline_run import start_parent_run
        from mlperf_track.tracking.setup import configure_tracking

        configure_tracking(None)
        start_parent_run()
        mark_run_failed(error)
    except Exception:  # the one-line error message matters more than the tags
        logger.warning("could not mark the MLflow run as failed", exc_info=True)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM (``mlflow run`` cancelling, ``kill``) into KeyboardInterrupt, so runs end KILLED."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> int:
    """Run the tracked pipeline and print the table of cases."""
    return execute(args)


def execute(args: argparse.Namespace, *, profile: bool = False, shown_files: tuple[str, ...] = ()) -> int:
    """Run the tracked pipeline (``profile`` forces profiling on) and print the cases and ``shown_files``.

    Returns:
        0 when the pipeline completed with at least one measured case, 1 when every case failed, 130 when
        interrupted.
    """
    from dataclasses import replace

    import mlflow

    from mlperf_track.cli.console import print_outcome
    from mlperf_track.engine.result import results_to_json
    from mlperf_track.pipeline.progress import ProgressListener
    from mlperf_track.tracking.pipeline_run import run_tracked_pipeline

    try:
        config = run_config_from_args(args)
        config = replace(config, profile=True) if profile else config
        output = writable_file("--output", Path(args.output)) if args.output else None
    except MlperfTrackError as error:
        record_bad_input(error)
        raise
    with sigterm_as_interrupt():
        outcome = run_tracked_pipeline(config, experiment=args.experiment, extra_listener=ProgressListener())
    console = print_outcome(outcome, shown_files)
    last = mlflow.last_active_run()
    if last is not None:
        console.print(f"logged to {mlflow.get_tracking_uri()}: parent run {last.info.run_id}")
    if output is not None:
        output.write_text(results_to_json(outcome.results), encoding="utf-8")
    if outcome.interrupted:
        return 130
    return 1 if outcome.outcomes and not outcome.results else 0
