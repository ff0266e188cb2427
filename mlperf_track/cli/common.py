"""Arguments and converters shared by several subcommands."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from mlperf_track.errors import ConfigError
from mlperf_track.pipeline.config import PipelineConfig
from mlperf_track.spec import DEVICES, PRECISIONS, check_choice, parse_int_list, parse_name_list


def batch_sizes(text: str) -> tuple[int, ...]:
    """``--batch-size 1,8,32``."""
    return parse_int_list("--batch-size", text)


def precisions(text: str) -> tuple[str, ...]:
    """``--precision fp32,bf16``."""
    return parse_name_list("--precision", text, PRECISIONS)


def names(text: str) -> tuple[str, ...]:
    """A comma-separated list of names, checked later against the right registry."""
    return parse_name_list("list", text)


def positive_int(parameter: str) -> Callable[[str], int]:
    """A converter for a positive integer option named ``parameter``."""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(parameter, text, "a positive integer") from None
        if value <= 0:
            raise ConfigError(parameter, value, "a positive integer")
        return value

    return convert


def device(text: str) -> str:
    """``--device auto|cpu|cuda``."""
    return check_choice("--device", text, DEVICES)


def writable_file(parameter: str, path: Path) -> Path:
    """Check that ``path`` can be created or overwritten, before any long work starts (creates nothing)."""
    import os

    target = path.expanduser().resolve()
    if not target.parent.is_dir():
        raise ConfigError(parameter, str(path), "a file in an existing directory")
    if target.is_dir():
        raise ConfigError(parameter, str(path), "a file path, not a directory")
    writable = os.access(target, os.W_OK) if target.exists() else os.access(target.parent, os.W_OK)
    if not writable:
        raise ConfigError(parameter, str(path), "a writable file path", hint="permission denied")
    return path


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--weights``."""
    parser.add_argument(
        "--model",
        required=True,
        help="torchvision name, model file, models:/ or runs:/ URI, hf:FOLDER or hf-config:NAME (e.g. gpt2-tiny)",
    )
    parser.add_argument("--weights", default=None, help="weights file for a torchvision model")


def add_case_arguments(parser: argparse.ArgumentParser) -> None:
    """Device, runtime, precision, batch size, image size, threads, channels-last."""
    parser.add_argument("--device", type=str, default="auto", help="auto, cpu or cuda")
    parser.add_argument("--runtime", type=str, default="eager", help="comma-separated runtimes")
    parser.add_argument("--precision", type=str, default="fp32", help="comma-separated precisions")
    parser.add_argument("--batch-size", type=str, default="1", help="comma-separated batch sizes")
    parser.add_argument("--image-size", type=str, default="224", help="input height and width")
    parser.add_argument("--num-threads", type=str, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--channels-last", action="store_true", help="use the channels-last memory format")
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="runtime or variant option, e.g. compile_mode=max-autotune (repeatable)",
    )


def parse_options(pairs: list[str]) -> tuple[tuple[str, str], ...]:
    """``["a=1", "b=2"]`` -> ``(("a", "1"), ("b", "2"))``."""
    options = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError("--option", pair, "KEY=VALUE")
        options.append((key.strip(), value.strip()))
    return tuple(options)


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    """Everything a pipeline run takes: model, case, variants, dataset, timing."""
    add_model_arguments(parser)
    add_case_arguments(parser)
    parser.add_argument(
        "--variants",
        default="",
        help="comma-separated variants or groups (quantized, pruned, distilled, all); the baseline always runs",
    )
    parser.add_argument(
        "--dataset",
        default="auto",
        help="digits, synthetic, imagefolder:PATH, "
        "torchvision:NAME:ROOT (auto: synthetic, or digits when variants are asked for)",
    )
    parser.add_argument("--epochs", default="auto", help="fine-tuning epochs for the baseline on a labelled dataset")
    parser.add_argument("--seed", default="0", help="seed for data splits, training and inputs")
    parser.add_argument("--max-time", default="auto", help="time cap per case in seconds")
    parser.add_argument(
        "--target-ci",
        default="auto",
        help="stop when the median's 95%% CI is this fraction of it (default 0.01 GPU, 0.02 CPU)",
    )
    parser.add_argument("--no-accuracy", action="store_true", help="skip accuracy even on a labelled dataset")
    parser.add_argument(
        "--seq-len",
        "--seq-lens",
        dest="seq_len",
        default="128",
        help="text encoders (hf:, hf-config:): comma-separated sequence lengths",
    )
    parser.add_argument(
        "--prompt-len",
        "--prompt-lens",
        dest="prompt_len",
        default="128",
        help="text decoders: comma-separated prompt lengths",
    )
    parser.add_argument(
        "--output-len",
        "--output-lens",
        dest="output_len",
        default="64",
        help="text decoders: comma-separated numbers of new tokens",
    )
    parser.add_argument("--output-dir", default="mlperf_track_output", help="per-case files (samples, JSON)")


def _number(parameter: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(parameter, text, "a positive number") from None
    if not value > 0:
        raise ConfigError(parameter, text, "a positive number")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError("--seed", text, "an integer >= 0") from None
    if value < 0:
        raise ConfigError("--seed", text, "an integer >= 0")
    return value


def pipeline_config_from_args(args: argparse.Namespace, *, profile: bool = False) -> PipelineConfig:
    """Build and validate a :class:`PipelineConfig` from :func:`add_pipeline_arguments`' flags.

    Values left at ``auto`` take the device's defaults (:func:`mlperf_track.pipeline.defaults.auto_defaults`),
    so the device is resolved here (``--device cuda`` without a GPU fails now, with exit code 2).
    """
    from dataclasses import replace

    from mlperf_track.engine.device import resolve_device
    from mlperf_track.pipeline.defaults import auto_defaults, is_auto
    from mlperf_track.pipeline.session import TEXT_PREFIXES

    device = resolve_device(check_choice("--device", args.device, DEVICES))
    defaults = auto_defaults(device)
    variants = () if is_auto(args.variants) or args.variants == "none" else names(args.variants)
    dataset = args.dataset
    if is_auto(dataset):
        # A text model's own dataset (pydoc-topics or stdlib-docstrings) is resolved once it is loaded.
        labelled = "auto" if args.model.startswith(TEXT_PREFIXES) else defaults["dataset"]
        dataset = labelled if variants else "synthetic"
    timing = defaults["timing"]
    if not is_auto(args.max_time):
        timing = replace(timing, max_time_s=_number("--max-time", args.max_time))
    if not is_auto(args.target_ci):
        target = _number("--target-ci", args.target_ci)
        if target >= 1:
            raise ConfigError("--target-ci", args.target_ci, "a fraction in (0, 1)")
        timing = replace(timing, target_rel_ci=target)
    epochs = defaults["epochs"] if is_auto(args.epochs) else _non_negative_int("--epochs", args.epochs)
    return PipelineConfig(
        model=args.model,
        weights=_existing_file("--weights", args.weights),
        device=device,
        variants=variants,
        runtimes=parse_name_list("--runtime", args.runtime),
        precisions=precisions(args.precision),
        batch_sizes=batch_sizes(args.batch_size),
        image_size=positive_int("--image-size")(args.image_size),
        dataset=dataset,
        epochs=epochs,
        num_threads=None if args.num_threads in (None, "", "auto") else positive_int("--num-threads")(args.num_threads),
        channels_last=bool(args.channels_last),
        options=parse_options(args.option),
        timing=timing,
        seed=_seed(args.seed),
        profile=profile,
        measure_accuracy=not args.no_accuracy,
        output_dir=Path(args.output_dir),
        seq_lens=parse_int_list("--seq-len", getattr(args, "seq_len", "128")),
        prompt_lens=parse_int_list("--prompt-len", getattr(args, "prompt_len", "128")),
        output_lens=parse_int_list("--output-len", getattr(args, "output_len", "64")),
    )


def _non_negative_int(parameter: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(parameter, text, "an integer >= 0") from None
    if value < 0:
        raise ConfigError(parameter, text, "an integer >= 0")
    return value


def _existing_file(parameter: str, path: str | None) -> str | None:
    if path is None or path == "":
        return None
    if not Path(path).expanduser().is_file():
        raise ConfigError(parameter, path, "an existing file")
    return path
