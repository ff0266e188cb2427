"""The pipeline configuration of ``bench``, ``run`` and ``profile``, built from the option table and checked up front.

Everything a user typed is validated here, before a model is loaded: each value (one line naming the flag, the
value and what is allowed), the dataset reference (an imagefolder with files that are not images), and every
``--option`` key against the options the selected runtimes and variants declare.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from mlperf_track.cli import parsers as p
from mlperf_track.cli.options import add_options, read
from mlperf_track.pipeline.options import check_declared_options

if TYPE_CHECKING:
    from mlperf_track.pipeline.config import PipelineConfig


def add_pipeline_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """The flags of ``command`` (``bench``, ``run`` or ``profile``) from the option table."""
    add_options(parser, command)


def pipeline_config_from_args(args: argparse.Namespace, *, profile: bool = False) -> PipelineConfig:
    """Build and validate a :class:`PipelineConfig` from the flags.

    Values left at ``auto`` take the device's defaults (:func:`mlperf_track.pipeline.defaults.auto_defaults`),
    so the device is resolved here (``--device cuda`` without a GPU fails now, with exit code 2).

    Args:
        args: Parsed flags of ``bench``, ``run`` or ``profile``.
        profile: Force profiling on (``profile``); else ``--profile`` decides where the command has it.

    Raises:
        ConfigError: A bad value, dataset or ``--option``.
        DeviceError: ``--device cuda`` without a GPU.
    """
    from mlperf_track.engine.device import resolve_device
    from mlperf_track.pipeline.config import PipelineConfig
    from mlperf_track.pipeline.defaults import auto_defaults
    from mlperf_track.pipeline.session import TEXT_PREFIXES

    device = resolve_device(read(args, "device") or "auto")
    defaults = auto_defaults(device)
    variants = read(args, "variants", defaults) or ()
    model = read(args, "model")
    labelled = "auto" if str(model).startswith(TEXT_PREFIXES) else defaults["dataset"]  # a text model's own dataset
    dataset = read(args, "dataset") or (labelled if variants else "synthetic")
    timing = defaults["timing"]
    max_time = read(args, "max_time")
    if max_time is not None:
        timing = replace(timing, max_time_s=max_time)
    target_ci = read(args, "target_ci")
    if target_ci is not None:
        timing = replace(timing, target_rel_ci=target_ci)
    max_accuracy_drop = read(args, "max_accuracy_drop")
    config = PipelineConfig(
        model=model,
        weights=read(args, "weights"),
        device=device,
        variants=tuple(variants),
        runtimes=tuple(read(args, "runtimes", defaults)),
        precisions=tuple(read(args, "precisions", defaults)),
        batch_sizes=tuple(read(args, "batch_sizes", defaults)),
        image_size=read(args, "image_size", defaults),
        dataset=dataset,
        epochs=read(args, "epochs", defaults),  # auto: the device default, passed through as it is
        train_precision=read(args, "train_precision") or "auto",
        num_threads=read(args, "num_threads"),
        channels_last=bool(read(args, "channels_last")),
        options=read(args, "options") or (),
        timing=timing,
        seed=read(args, "seed"),
        profile=profile or bool(getattr(args, "profile", None) is not None and read(args, "profile")),
        measure_accuracy=bool(read(args, "accuracy")),
        output_dir=Path(read(args, "output_dir")),
        max_accuracy_drop=max_accuracy_drop,
        repeats=read(args, "repeats"),
        pin_cores=read(args, "pin_cores"),
        keep_files=bool(read(args, "keep_files")),
        trust_pickle=bool(read(args, "trust_pickle")),
        seq_lens=read(args, "seq_lens"),
        prompt_lens=read(args, "prompt_lens"),
        output_lens=read(args, "output_lens"),
    )
    check_declared_options(config)
    return config


def output_file(args: argparse.Namespace) -> Path | None:
    """``--output``, checked writable now (creates nothing)."""
    value = read(args, "output")
    return Path(value) if value is not None else None


# Converters in the shapes other subcommands (cli/load.py) use; they share the parsers of the option table.
def positive_int(parameter: str) -> Callable[[str], int]:
    """A converter for a positive integer option named ``parameter``."""
    return lambda text: p.positive_int(parameter, text)


def parse_options(pairs: list[str]) -> tuple[tuple[str, str], ...]:
    """``["a=1", "b=2,c=3"]`` -> ``(("a", "1"), ("b", "2"), ("c", "3"))`` (empty items refused)."""
    return p.key_values("--option", pairs) if pairs else ()


def writable_file(parameter: str, path: Path) -> Path:
    """Check that ``path`` can be created or overwritten, before any long work starts (creates nothing)."""
    return p.writable_file(parameter, str(path))
