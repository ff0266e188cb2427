"""Arguments and converters shared by several subcommands."""

from __future__ import annotations

import argparse
from pathlib import Path

from mlperf_track.errors import ConfigError
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


def positive_int(parameter: str):  # type: ignore[no-untyped-def]
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
    """Check that ``path`` can be created or overwritten, before any long work starts."""
    parent = path.expanduser().resolve().parent
    if not parent.is_dir():
        raise ConfigError(parameter, str(path), "a file in an existing directory")
    try:
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as error:
        raise ConfigError(parameter, str(path), "a writable file path", hint=error.strerror) from None
    return path


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--weights``."""
    parser.add_argument("--model", required=True, help="torchvision name, model file, models:/ or runs:/ URI")
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
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="runtime or variant option, e.g. compile_mode=max-autotune (repeatable)")


def parse_options(pairs: list[str]) -> tuple[tuple[str, str], ...]:
    """``["a=1", "b=2"]`` -> ``(("a", "1"), ("b", "2"))``."""
    options = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError("--option", pair, "KEY=VALUE")
        options.append((key.strip(), value.strip()))
    return tuple(options)
