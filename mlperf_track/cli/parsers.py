"""Parsers of option text: each takes ``(flag, text)`` and returns a value or raises one-line ConfigError.

``auto`` and ``none`` are handled by :func:`mlperf_track.cli.options.read` before a parser sees the text. Comma
lists refuse empty items (``1,,8``, ``eager,``): an empty item is almost always a typo, and silently dropping it
would measure something other than what was asked.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from mlperf_track.errors import ConfigError
from mlperf_track.spec import DEVICES, PRECISIONS, TRAIN_PRECISION_CHOICES, check_choice

AUTO_WORDS = ("", "auto")
NONE_WORDS = ("none", "null", "off")
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def is_auto(text: object) -> bool:
    """Whether ``text`` means "choose for me" (``auto``, empty or ``None``)."""
    return text is None or (isinstance(text, str) and text.strip().lower() in AUTO_WORDS)


def is_none(text: object) -> bool:
    """Whether ``text`` means "not set" (``none``, ``null``, ``off``)."""
    return isinstance(text, str) and text.strip().lower() in NONE_WORDS


def split_items(flag: str, text: str, example: str = "1,8") -> list[str]:
    """Split a comma list; an empty item (``1,,8``, ``eager,``) is an error."""
    items = [item.strip() for item in str(text).split(",")]
    if any(not item for item in items):
        raise ConfigError(flag, text, f"a comma-separated list without empty items, e.g. {example}")
    return items


def text(flag: str, value: str) -> str:
    """Any non-empty text, stripped."""
    if not str(value).strip():
        raise ConfigError(flag, value, "a non-empty value")
    return str(value).strip()


def _integer(flag: str, value: str, minimum: int, allowed: str) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ConfigError(flag, value, allowed) from None
    if number < minimum:
        raise ConfigError(flag, value, allowed)
    return number


def positive_int(flag: str, value: str) -> int:
    """An integer >= 1."""
    return _integer(flag, value, 1, "a positive integer")


def worker_count(flag: str, value: str) -> int | str:
    """A positive integer, or ``gpus`` (one worker per visible GPU)."""
    if str(value).strip().lower() == "gpus":
        return "gpus"
    return _integer(flag, value, 1, "a positive integer or gpus")


def non_negative_int(flag: str, value: str) -> int:
    """An integer >= 0."""
    return _integer(flag, value, 0, "an integer >= 0")


def _float(flag: str, value: str, allowed: str) -> float:
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ConfigError(flag, value, allowed) from None
    if not math.isfinite(number):
        raise ConfigError(flag, value, allowed)
    return number


def positive_number(flag: str, value: str) -> float:
    """A finite number > 0."""
    number = _float(flag, value, "a positive number")
    if number <= 0:
        raise ConfigError(flag, value, "a positive number")
    return number


def non_negative_number(flag: str, value: str) -> float:
    """A finite number >= 0."""
    number = _float(flag, value, "a number >= 0")
    if number < 0:
        raise ConfigError(flag, value, "a number >= 0")
    return number


def positive_number_list(flag: str, value: str) -> tuple[float, ...]:
    """``20,40,80``: positive numbers, duplicates dropped, order kept."""
    items = split_items(flag, value, example="20,40")
    numbers = []
    for item in items:
        number = _float(flag, item, "a comma-separated list of positive numbers, e.g. 20,40")
        if number <= 0:
            raise ConfigError(flag, value, "a comma-separated list of positive numbers, e.g. 20,40")
        numbers.append(number)
    return tuple(dict.fromkeys(numbers))


def non_negative_number_list(flag: str, value: str) -> tuple[float, ...]:
    """``0,2,10``: numbers >= 0, duplicates dropped, order kept."""
    numbers = []
    for item in split_items(flag, value, example="0,2"):
        number = _float(flag, item, "a comma-separated list of numbers >= 0, e.g. 0,2")
        if number < 0:
            raise ConfigError(flag, value, "a comma-separated list of numbers >= 0, e.g. 0,2")
        numbers.append(number)
    return tuple(dict.fromkeys(numbers))


def scenario(flag: str, value: str) -> str:
    """A load scenario (MLPerf LoadGen's, and perf_analyzer's ``concurrency``)."""
    from mlperf_track.engine.load.config import SCENARIOS

    return check_choice(flag, str(value).strip(), SCENARIOS)


def fraction(flag: str, value: str) -> float:
    """A number in (0, 1)."""
    number = _float(flag, value, "a fraction in (0, 1)")
    if not 0 < number < 1:
        raise ConfigError(flag, value, "a fraction in (0, 1)")
    return number


def fraction_or_zero(flag: str, value: str) -> float:
    """A number in [0, 1] (0.01 = one point of top-1)."""
    allowed = "a fraction in [0, 1] such as 0.01 (1 point), or none"
    number = _float(flag, value, allowed)
    if not 0 <= number <= 1:
        raise ConfigError(flag, value, allowed)
    return number


def boolean(flag: str, value: str) -> bool:
    """``true``/``false`` (also 1/0, yes/no, on/off)."""
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError(flag, value, "true or false")


def int_list(flag: str, value: str, minimum: int = 1) -> tuple[int, ...]:
    """``1,8,32``: integers >= ``minimum``, duplicates dropped, order kept."""
    allowed = f"a comma-separated list of integers >= {minimum}, e.g. 1,8"
    numbers = [_integer(flag, item, minimum, allowed) for item in split_items(flag, value)]
    return tuple(dict.fromkeys(numbers))


def batch_sizes(flag: str, value: str) -> tuple[int, ...]:
    """``1,8,32``."""
    return int_list(flag, value)


def positive_int_list(flag: str, value: str) -> tuple[int, ...]:
    """``1,2,4``."""
    return int_list(flag, value)


def core_list(flag: str, value: str) -> tuple[int, ...]:
    """CPU core numbers ``0,1``, each one this process may run on."""
    cores = int_list(flag, value, minimum=0)
    available = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    if available is not None:
        for core in cores:
            if core not in available:
                raise ConfigError(flag, value, f"cores this process may use: {_ranges(available)}")
    return cores


def _ranges(cores: list[int]) -> str:
    return ",".join(str(core) for core in cores) if len(cores) <= 8 else f"{cores[0]}-{cores[-1]}"


def names(flag: str, value: str, allowed: tuple[str, ...] | list[str] | None = None) -> tuple[str, ...]:
    """``a,b``: names (checked against ``allowed`` when given, with close matches), duplicates dropped."""
    items = split_items(flag, value, example="a,b")
    if allowed is not None:
        for item in items:
            check_choice(flag, item, list(allowed))
    return tuple(dict.fromkeys(items))


def precisions(flag: str, value: str) -> tuple[str, ...]:
    """``fp32,bf16``."""
    return names(flag, value, PRECISIONS)


def runtimes(flag: str, value: str) -> tuple[str, ...]:
    """Registered runtime names."""
    from mlperf_track.runtimes.registry import runtime_names

    return names(flag, value, runtime_names())


def variants(flag: str, value: str) -> tuple[str, ...]:
    """Registered variant names, groups, ``baseline``, or compositions ``a+b`` of registered names."""
    from mlperf_track.variants.compose import SEPARATOR
    from mlperf_track.variants.registry import BASELINE, group_names, variant_names

    recipes = variant_names()
    known = [*recipes, *group_names(), BASELINE]
    items = names(flag, value, None)
    for item in items:
        if item in known:
            continue
        if SEPARATOR in item:
            for part in item.split(SEPARATOR):
                check_choice(flag, part.strip(), recipes)
            continue
        check_choice(flag, item, known)
    return items


def device(flag: str, value: str) -> str:
    """``auto``, ``cpu`` or ``cuda``."""
    return check_choice(flag, str(value).strip(), DEVICES)


def train_precision(flag: str, value: str) -> str:
    """``auto``, ``fp32`` or ``bf16``."""
    return check_choice(flag, str(value).strip().lower(), TRAIN_PRECISION_CHOICES)


def objective(flag: str, value: str) -> str:
    """A tuning objective."""
    from mlperf_track.tuning.config import OBJECTIVES

    return check_choice(flag, str(value).strip(), OBJECTIVES)


def sampler(flag: str, value: str) -> str:
    """An Optuna sampler name."""
    from mlperf_track.tuning.config import SAMPLERS

    return check_choice(flag, str(value).strip(), SAMPLERS)


def pruner(flag: str, value: str) -> str:
    """A pruner name of the tuner."""
    from mlperf_track.tuning.config import PRUNERS

    return check_choice(flag, str(value).strip(), PRUNERS)


def key_values(flag: str, values: list[str]) -> tuple[tuple[str, str], ...]:
    """``["a=1,b=2", "c=3"]`` -> ``(("a", "1"), ("b", "2"), ("c", "3"))``; a later key wins."""
    pairs: dict[str, str] = {}
    for value in values:
        for item in split_items(flag, value, example="compile_mode=max-autotune,ratio=0.3"):
            key, separator, setting = item.partition("=")
            if not separator or not key.strip():
                raise ConfigError(flag, item, "KEY=VALUE, e.g. compile_mode=max-autotune")
            pairs[key.strip()] = setting.strip()
    return tuple(pairs.items())


def existing_file(flag: str, value: str) -> str:
    """A path to an existing file."""
    if not Path(value).expanduser().is_file():
        raise ConfigError(flag, value, "an existing file")
    return str(value)


def dataset(flag: str, value: str) -> str:
    """A dataset reference (its source checks it cheaply now: scheme, folder, files that are not images)."""
    from mlperf_track.data.registry import check_dataset
    from mlperf_track.data.text import TEXT_DATASETS

    reference = text(flag, value)
    if reference not in TEXT_DATASETS:  # a text model's own datasets are checked against the model once loaded
        check_dataset(reference)
    return reference


def writable_file(flag: str, value: str) -> Path:
    """A file that can be created or overwritten (checked before any long work starts; creates nothing)."""
    path = Path(value)
    target = path.expanduser().resolve()
    if not target.parent.is_dir():
        raise ConfigError(flag, str(path), "a file in an existing directory")
    if target.is_dir():
        raise ConfigError(flag, str(path), "a file path, not a directory")
    writable = os.access(target, os.W_OK) if target.exists() else os.access(target.parent, os.W_OK)
    if not writable:
        raise ConfigError(flag, str(path), "a writable file path", hint="permission denied")
    return path


def resume(flag: str, value: str) -> str:
    """``last`` or a parent run id (32 hex characters)."""
    from mlperf_track.tracking.resume import parse_resume

    return parse_resume(flag, value)
