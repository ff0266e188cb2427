"""Frozen, validated configuration objects shared by every layer.

A :class:`CaseSpec` identifies one measurement (model, variant, runtime, precision, batch size, device, ...);
it is hashable, so results can be keyed and merged by it. :class:`TimingConfig` says how long to measure.
Constructors only validate; nothing is loaded here. This module imports only :mod:`mlperf_track.errors`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Final

from mlperf_track.errors import ConfigError

#: Every precision the product knows. Runtimes declare the subset they can run.
PRECISIONS: Final = ("fp32", "tf32", "fp16", "bf16", "int8", "fp8")
#: Devices a user may ask for; ``auto`` resolves to ``cuda`` when a GPU is present, else ``cpu``.
DEVICES: Final = ("auto", "cpu", "cuda")
#: Devices a case runs on (after ``auto`` is resolved).
CASE_DEVICES: Final = ("cpu", "cuda")


def closest_matches(value: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Return up to ``n`` candidates that look like ``value`` (for "did you mean" hints)."""
    return difflib.get_close_matches(value, list(candidates), n=n, cutoff=0.5)


def check_choice(parameter: str, value: str, allowed: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``allowed``, else raise a :class:`ConfigError` with close matches."""
    if value in allowed:
        return value
    matches = closest_matches(str(value), allowed)
    hint = f"did you mean {', '.join(matches)}?" if matches else None
    raise ConfigError(parameter, value, allowed, hint)


def check_positive_int(parameter: str, value: object) -> int:
    """Return ``value`` as an int if it is a positive integer (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(parameter, value, "a positive integer")
    return value


def check_positive_float(parameter: str, value: object) -> float:
    """Return ``value`` as a float if it is a positive number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(parameter, value, "a positive number")
    return float(value)


def parse_int_list(parameter: str, text: str) -> tuple[int, ...]:
    """Parse ``"1,8,32"`` into ``(1, 8, 32)``; every item must be a positive integer."""
    items = [item.strip() for item in str(text).split(",") if item.strip()]
    if not items:
        raise ConfigError(parameter, text, "a comma-separated list of positive integers")
    values = []
    for item in items:
        try:
            number = int(item)
        except ValueError:
            raise ConfigError(parameter, item, "a comma-separated list of positive integers") from None
        values.append(check_positive_int(parameter, number))
    return tuple(dict.fromkeys(values))


def parse_name_list(parameter: str, text: str, allowed: Sequence[str] | None = None) -> tuple[str, ...]:
    """Parse ``"a,b"`` into ``("a", "b")``, checking each name against ``allowed`` when given."""
    items = tuple(dict.fromkeys(item.strip() for item in str(text).split(",") if item.strip()))
    if not items:
        raise ConfigError(parameter, text, allowed if allowed else "a comma-separated list of names")
    if allowed is not None:
        for item in items:
            check_choice(parameter, item, allowed)
    return items


@dataclass(frozen=True)
class TimingConfig:
    """How long to warm up and measure one case.

    The timed loop stops at the first of: the 95% confidence interval of the median is narrower than
    ``target_rel_ci`` of the median (after ``min_iters``), ``max_iters`` iterations, or ``max_time_s``.

    Attributes:
        warmup_iters: Minimum warm-up calls.
        warmup_s: Minimum warm-up time; warm-up ends when both minimums are met.
        min_iters: Minimum timed calls.
        max_iters: Maximum timed calls.
        min_time_s: Minimum timed window (the energy counter needs about a second).
        max_time_s: Time cap for the timed window.
        target_rel_ci: Target width of the median's 95% CI relative to the median (0.01 = 1%).
        confidence: Confidence level of that interval.
        cv_warning: Coefficient of variation above which the spread is reported as high.
    """

    warmup_iters: int = 5
    warmup_s: float = 0.2
    min_iters: int = 10
    max_iters: int = 10_000
    min_time_s: float = 0.0
    max_time_s: float = 10.0
    target_rel_ci: float = 0.01
    confidence: float = 0.95
    cv_warning: float = 0.10

    def __post_init__(self) -> None:
        if isinstance(self.warmup_iters, bool) or not isinstance(self.warmup_iters, int) or self.warmup_iters < 0:
            raise ConfigError("warmup_iters", self.warmup_iters, "an integer >= 0")
        if not isinstance(self.warmup_s, (int, float)) or self.warmup_s < 0:
            raise ConfigError("warmup_s", self.warmup_s, "a number >= 0")
        check_positive_int("min_iters", self.min_iters)
        check_positive_int("max_iters", self.max_iters)
        if self.max_iters < self.min_iters:
            raise ConfigError("max_iters", self.max_iters, f"an integer >= min_iters ({self.min_iters})")
        if not isinstance(self.min_time_s, (int, float)) or self.min_time_s < 0:
            raise ConfigError("min_time_s", self.min_time_s, "a number >= 0")
        check_positive_float("max_time_s", self.max_time_s)
        if not 0 < self.target_rel_ci < 1:
            raise ConfigError("target_rel_ci", self.target_rel_ci, "a number in (0, 1)")
        if not 0 < self.confidence < 1:
            raise ConfigError("confidence", self.confidence, "a number in (0, 1)")
        check_positive_float("cv_warning", self.cv_warning)

    def to_dict(self) -> dict[str, float | int]:
        """Plain dict of the settings (for logging as params)."""
        return asdict(self)


@dataclass(frozen=True)
class CaseSpec:
    """Identifies one measured case: what runs, how, on what.

    Attributes:
        model: Model reference as the user gave it (``resnet18``, a file path, ``models:/name/1``).
        variant: Variant name (``baseline``, ``quantized``, ``pruned``, ...).
        runtime: Runtime name (``eager``, ``compile``, ``onnxruntime``, ``tensorrt``, ``openvino``).
        precision: One of :data:`PRECISIONS`.
        batch_size: Samples per call.
        device: ``cpu`` or ``cuda`` (already resolved from ``auto``).
        image_size: Input height and width in pixels.
        dataset: Dataset reference (``digits``, ``synthetic``, ``imagefolder:/path``).
        num_threads: Intra-op threads on CPU; ``None`` keeps torch's default.
        channels_last: Whether inputs and weights use the channels-last memory format.
        options: Runtime/variant options as sorted ``(key, value)`` pairs (e.g. ``("compile_mode", "max-autotune")``).
    """

    model: str
    variant: str = "baseline"
    runtime: str = "eager"
    precision: str = "fp32"
    batch_size: int = 1
    device: str = "cpu"
    image_size: int = 224
    dataset: str = "synthetic"
    num_threads: int | None = None
    channels_last: bool = False
    options: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("model", self.model, "a model name, file or URI")
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("device", self.device, CASE_DEVICES)
        check_positive_int("batch_size", self.batch_size)
        check_positive_int("image_size", self.image_size)
        if self.num_threads is not None:
            check_positive_int("num_threads", self.num_threads)
        object.__setattr__(self, "options", tuple(sorted((str(k), str(v)) for k, v in self.options)))

    @property
    def option_dict(self) -> dict[str, str]:
        """The options as a dict."""
        return dict(self.options)

    @property
    def name(self) -> str:
        """A short, stable, human-readable name (used as the MLflow child run name)."""
        parts = [self.variant, self.runtime, self.precision, f"bs{self.batch_size}"]
        if self.channels_last:
            parts.append("cl")
        parts.extend(f"{key}={value}" for key, value in self.options)
        return "-".join(parts)

    def params(self) -> dict[str, str]:
        """The case as MLflow params (DESIGN.md names), all strings."""
        params = {
            "model": self.model,
            "variant": self.variant,
            "runtime": self.runtime,
            "precision": self.precision,
            "batch_size": str(self.batch_size),
            "device": self.device,
            "image_size": str(self.image_size),
            "dataset": self.dataset,
            "num_threads": "default" if self.num_threads is None else str(self.num_threads),
            "channels_last": str(self.channels_last).lower(),
        }
        params.update({f"option.{key}": value for key, value in self.options})
        return params

    def to_dict(self) -> dict[str, object]:
        """Plain, JSON-ready dict of the fields."""
        data = asdict(self)
        data["options"] = dict(self.options)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> CaseSpec:
        """Inverse of :meth:`to_dict`."""
        values = dict(data)
        options = values.pop("options", {}) or {}
        assert isinstance(options, dict)
        return cls(**values, options=tuple(options.items()))  # type: ignore[arg-type]
