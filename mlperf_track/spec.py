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
#: Precisions a model can be trained in: ``fp32``, or ``bf16`` mixed precision (forward pass and loss under
#: ``torch.autocast`` in bfloat16; weights, gradients, optimizer state and BatchNorm statistics stay fp32).
TRAIN_PRECISIONS: Final = ("fp32", "bf16")
#: ``train_precision`` values: ``auto`` is bf16 where the device computes it natively, else fp32.
TRAIN_PRECISION_CHOICES: Final = ("auto", *TRAIN_PRECISIONS)
#: Devices a user may ask for; ``auto`` resolves to ``cuda`` when a GPU is present, else ``cpu``.
DEVICES: Final = ("auto", "cpu", "cuda")
#: Devices a case runs on (after ``auto`` is resolved).
CASE_DEVICES: Final = ("cpu", "cuda")
#: Model references of the text sources (``hf:FOLDER``, ``hf-config:NAME``): known as text before loading.
TEXT_MODEL_PREFIXES: Final = ("hf:", "hf-config:")


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


#: How ``throughput/samples_per_s`` is timed (see :class:`TimingConfig`).
THROUGHPUT_METHODS: Final = ("auto", "block", "per_call")


def _check_fraction(parameter: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ConfigError(parameter, value, "a number in (0, 1)")
    return float(value)


def _check_non_negative(parameter: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ConfigError(parameter, value, "a number >= 0")
    return float(value)


@dataclass(frozen=True)
class TimingConfig:
    """How long to warm up and measure one case, and when a measurement counts as valid.

    The per-call timed loop stops at the first of: the 95% confidence interval of the median is narrower than
    ``target_rel_ci`` of the median (once ``min_iters`` calls and ``min_time_s`` of measured time are done),
    ``max_iters`` calls, or ``max_time_s``. A ``max_time_s`` at or below ``min_time_s`` lowers the minimum to
    it (the result then carries a warning that the window is shorter than the minimum, instead of being invalid).

    Every measurement gets a validity verdict (``BenchmarkResult.invalid_reasons``), computed from its samples:
    it is invalid when it has fewer than ``min_iters`` samples or too few for a CI of the median; when that CI
    is wider than ``target_rel_ci``; when its measured time is under the minimum; when the coefficient of
    variation exceeds ``max_cv``; or when it is not stable: the medians of ``stability_windows`` consecutive
    windows of the timed samples (the timed window split by call order) differ by more than
    ``stability_tolerance`` (max/min - 1), perf_analyzer's rule for its last 3 measurement windows, and
    significantly (Kruskal-Wallis p < 0.01, so a few calls per window do not make noise look like drift).

    Throughput is timed separately from the latency percentiles when the method is ``block``: after the
    per-call loop, blocks of back-to-back calls run between two clock reads (one device sync per block, as
    ``torch.utils.benchmark``'s ``blocked_autorange``), each block about ``block_s`` long, for about
    ``throughput_time_s``. ``per_call`` derives throughput from the per-call samples (batch / mean latency),
    which on a GPU includes a sync after every call. ``auto`` is ``block`` on CUDA and ``per_call`` on the
    CPU, where calls are synchronous and the per-call loop already is back-to-back work.

    Attributes:
        warmup_iters: Minimum warm-up calls.
        warmup_s: Minimum warm-up time; warm-up ends when both minimums are met.
        min_iters: Minimum timed calls; fewer makes the result invalid.
        max_iters: Maximum timed calls (a hard cap, also before ``min_time_s``: the result is then invalid).
        min_time_s: Minimum measured time of the per-call window (the sum of the timed calls). Between-run
            reproducibility needs a window of about a second on CPUs (``benchmarks/min_duration.py``), and the
            GPU energy counter needs about a second too. 0 (this class's default) disables the minimum; the
            per-device defaults users get (``pipeline/defaults.py``) set it.
        max_time_s: Time cap for the per-call window.
        target_rel_ci: Target width of the median's 95% CI relative to the median (0.01 = 1%).
        confidence: Confidence level of that interval.
        cv_warning: Coefficient of variation above which the spread is reported as high (a warning).
        max_cv: Coefficient of variation above which the measurement is invalid.
        stability_windows: Consecutive windows the timed samples are split into for the stability rule.
        stability_tolerance: Largest max/min - 1 of the windows' medians (perf_analyzer's default
            ``--stability-percentage`` is 10%).
        throughput_method: ``auto``, ``block`` or ``per_call`` (see above).
        block_s: Target duration of one block of the block-timed throughput phase.
        throughput_time_s: Duration of the block-timed throughput phase (at least 3 blocks run).
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
    max_cv: float = 0.5
    stability_windows: int = 3
    stability_tolerance: float = 0.10
    throughput_method: str = "auto"
    block_s: float = 0.05
    throughput_time_s: float = 0.5

    def __post_init__(self) -> None:
        if isinstance(self.warmup_iters, bool) or not isinstance(self.warmup_iters, int) or self.warmup_iters < 0:
            raise ConfigError("warmup_iters", self.warmup_iters, "an integer >= 0")
        _check_non_negative("warmup_s", self.warmup_s)
        check_positive_int("min_iters", self.min_iters)
        check_positive_int("max_iters", self.max_iters)
        if self.max_iters < self.min_iters:
            raise ConfigError("max_iters", self.max_iters, f"an integer >= min_iters ({self.min_iters})")
        _check_non_negative("min_time_s", self.min_time_s)
        check_positive_float("max_time_s", self.max_time_s)
        _check_fraction("target_rel_ci", self.target_rel_ci)
        _check_fraction("confidence", self.confidence)
        check_positive_float("cv_warning", self.cv_warning)
        check_positive_float("max_cv", self.max_cv)
        if self.max_cv < self.cv_warning:
            raise ConfigError("max_cv", self.max_cv, f"a number >= cv_warning ({self.cv_warning:g})")
        check_positive_int("stability_windows", self.stability_windows)
        if self.stability_windows < 2:
            raise ConfigError("stability_windows", self.stability_windows, "an integer >= 2")
        _check_fraction("stability_tolerance", self.stability_tolerance)
        check_choice("throughput_method", self.throughput_method, THROUGHPUT_METHODS)
        check_positive_float("block_s", self.block_s)
        check_positive_float("throughput_time_s", self.throughput_time_s)

    @property
    def effective_min_time_s(self) -> float:
        """The minimum measured time the loop honours: ``min_time_s``, lowered to ``max_time_s`` if that is less."""
        return min(self.min_time_s, self.max_time_s)

    def throughput_method_for(self, device: str) -> str:
        """``block`` or ``per_call`` for ``device`` (resolves ``auto``)."""
        if self.throughput_method != "auto":
            return self.throughput_method
        return "block" if device.startswith("cuda") else "per_call"

    def to_dict(self) -> dict[str, float | int | str]:
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
        seq_len: A text encoder's tokens per sequence, or ``None`` for other models.
        prompt_len: A text decoder's prompt tokens per sequence, or ``None``.
        output_len: A text decoder's new tokens per sequence, or ``None``.
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
    seq_len: int | None = None
    prompt_len: int | None = None
    output_len: int | None = None

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("model", self.model, "a model name, file or URI")
        for name in ("seq_len", "prompt_len", "output_len"):
            if getattr(self, name) is not None:
                check_positive_int(name, getattr(self, name))
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
        parts.extend(
            f"{short}{value}"
            for short, value in (("seq", self.seq_len), ("p", self.prompt_len), ("o", self.output_len))
            if value is not None
        )
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
        params.update({name: str(value) for name, value in self.lengths().items()})
        return params

    def lengths(self) -> dict[str, int]:
        """The text lengths that are set (``seq_len``, ``prompt_len``, ``output_len``); empty for image models."""
        values = {"seq_len": self.seq_len, "prompt_len": self.prompt_len, "output_len": self.output_len}
        return {name: value for name, value in values.items() if value is not None}

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
