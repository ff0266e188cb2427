"""The configuration of one tuning study: what to search, what to optimise, under which limits.

A :class:`TuneConfig` is a frozen, validated dataclass like :class:`~mlperf_track.pipeline.config.PipelineConfig`.
Values a user may leave to the machine (``auto``) are resolved later, once the device is known (see
:mod:`mlperf_track.tuning.space`); constructing the config loads nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from mlperf_track.errors import ConfigError
from mlperf_track.spec import DEVICES, PRECISIONS, TimingConfig, check_choice, check_positive_int, parse_int_list

#: ``--objective`` values: maximise throughput, minimise p99 latency, or a Pareto front of several metrics.
OBJECTIVES: Final = ("throughput", "latency", "multi")
#: ``--sampler`` values. ``auto`` is TPE (see :mod:`mlperf_track.tuning.sampling` for why).
SAMPLERS: Final = ("auto", "tpe", "grid", "random", "nsga2")
#: Largest batch size of ``--batch-sizes auto`` per device.
AUTO_MAX_BATCH: Final = {"cpu": 64, "cuda": 512}
#: Words that mean "leave it to the machine" / "nothing" in flags and MLproject parameters.
AUTO_WORDS: Final = ("", "auto")
NONE_WORDS: Final = ("none", "null", "off")


def is_auto(text: str | None) -> bool:
    """Whether a flag value means "choose for me" (``auto``, empty or ``None``)."""
    return text is None or text.strip().lower() in AUTO_WORDS


def is_none(text: str | None) -> bool:
    """Whether a flag value means "none" (``none``, ``null``, ``off``)."""
    return text is not None and text.strip().lower() in NONE_WORDS


def powers_of_two(maximum: int) -> tuple[int, ...]:
    """``(1, 2, 4, ..., p)`` with ``p`` the largest power of two not above ``maximum``."""
    check_positive_int("batch size maximum", maximum)
    return tuple(2**exponent for exponent in range(int(math.log2(maximum)) + 1))


def parse_batch_sizes(text: str, device: str) -> tuple[int, ...]:
    """Parse ``--batch-sizes``: ``auto``, ``max:N`` (powers of two up to N) or a list ``1,2,4``.

    Args:
        text: The flag value.
        device: The resolved device (``auto`` means powers of two up to :data:`AUTO_MAX_BATCH` there).

    Returns:
        The batch sizes, ascending and without duplicates.

    Raises:
        ConfigError: For anything else.
    """
    if is_auto(text):
        return powers_of_two(AUTO_MAX_BATCH.get(device, AUTO_MAX_BATCH["cpu"]))
    value = text.strip().lower()
    if value.startswith("max:"):
        try:
            maximum = int(value[4:])
        except ValueError:
            raise ConfigError("--batch-sizes", text, "auto, max:N or a list such as 1,2,4") from None
        if maximum <= 0:
            raise ConfigError("--batch-sizes", text, "auto, max:N with N >= 1, or a list such as 1,2,4")
        return powers_of_two(maximum)
    return tuple(sorted(parse_int_list("--batch-sizes", text)))


@dataclass(frozen=True)
class TuneConfig:
    """Everything one tuning study needs. Validated on construction; nothing is loaded here.

    Attributes:
        model: Model reference (torchvision name, file, ``models:/`` URI).
        weights: Weights file for a torchvision model, or ``None``.
        device: ``auto``, ``cpu`` or ``cuda``.
        objective: One of :data:`OBJECTIVES`.
        n_trials: How many trials the study should hold when it ends (shared by every worker of the study;
            retries of trials whose worker died do not count).
        batch_sizes: ``auto``, ``max:N`` or a list ``1,2,4`` (see :func:`parse_batch_sizes`).
        precisions: Precisions to search, or ``()`` for every precision a runtime supports on the device.
        runtimes: Runtimes to search, or ``()`` for the device's default runtimes.
        variants: Variants besides the baseline (``()``: the baseline only).
        compile_modes: ``torch.compile`` modes to search for the ``compile`` runtime (``()``: its default).
        threads: CPU thread counts to search (``()``: torch's default; CPU only).
        image_size: Input resolution, or ``None`` for the device default.
        dataset: Dataset reference, or ``auto`` (labelled digits when accuracy matters, else synthetic).
        epochs: Fine-tuning epochs on a labelled dataset, or ``None`` for the device default.
        seq_len: Tokens per sequence of a text encoder's trials (ignored for other models).
        prompt_len: Prompt tokens of a text decoder's trials (ignored for other models).
        output_len: New tokens per prompt of a text decoder's trials (ignored for other models).
        memory_limit_mb: Peak memory a feasible configuration may use, or ``None``.
        p99_slo_ms: p99 latency (per batch) a feasible configuration may take, or ``None``.
        max_accuracy_drop: Largest top-1 drop against the baseline (a fraction: 0.01 is one point), or ``None``.
        storage: Optuna storage URL (``sqlite:///...``, ``postgresql://...``), or ``None`` for memory.
        study_name: Study name (resumes the study when it exists), or ``None`` for a new unique name.
        sampler: One of :data:`SAMPLERS`.
        seed: Seed for the sampler, data and inputs.
        experiment: MLflow experiment name, or ``None`` for MLflow's choice.
        timing: How long to measure each trial, or ``None`` for the device default.
        max_time_s: Time cap of each trial's timed window (overrides ``timing.max_time_s``), or ``None``.
        heartbeat_interval_s: Heartbeat of a running trial in a database storage.
        grace_period_s: A running trial whose heartbeat is older than this is failed and retried.
        max_retry: How often a trial whose worker died is retried.
        output_dir: Where per-trial files (samples, result JSON) are written.
        cache_dir: Cache for baselines and exports, or ``None`` for the pipeline default.
        trust_pickle: Allow model and weights files that run code when loaded (see
            :mod:`mlperf_track.models.safety`).
    """

    model: str
    weights: str | None = None
    device: str = "auto"
    objective: str = "throughput"
    n_trials: int = 30
    batch_sizes: str = "auto"
    precisions: tuple[str, ...] = ()
    runtimes: tuple[str, ...] = ()
    variants: tuple[str, ...] = ()
    compile_modes: tuple[str, ...] = ()
    threads: tuple[int, ...] = ()
    image_size: int | None = None
    dataset: str = "auto"
    epochs: int | None = None
    seq_len: int = 128
    prompt_len: int = 128
    output_len: int = 64
    memory_limit_mb: float | None = None
    p99_slo_ms: float | None = None
    max_accuracy_drop: float | None = None
    storage: str | None = None
    study_name: str | None = None
    sampler: str = "auto"
    seed: int = 0
    experiment: str | None = None
    timing: TimingConfig | None = None
    max_time_s: float | None = None
    heartbeat_interval_s: int = 10
    grace_period_s: int = 30
    max_retry: int = 3
    output_dir: Path = Path("mlperf_track_output") / "tune"
    cache_dir: Path | None = field(default=None)
    trust_pickle: bool = False

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("--model", self.model, "a model name, file or URI")
        check_choice("--device", self.device, DEVICES)
        check_choice("--objective", self.objective, OBJECTIVES)
        check_choice("--sampler", self.sampler, SAMPLERS)
        if isinstance(self.n_trials, bool) or not isinstance(self.n_trials, int) or self.n_trials <= 0:
            raise ConfigError("--n-trials", self.n_trials, "a positive integer")
        for precision in self.precisions:
            check_choice("--precisions", precision, PRECISIONS)
        for threads in self.threads:
            check_positive_int("--threads", threads)
        if self.image_size is not None:
            check_positive_int("--image-size", self.image_size)
        for flag, length in (
            ("--seq-lens", self.seq_len),
            ("--prompt-lens", self.prompt_len),
            ("--output-lens", self.output_len),
        ):
            check_positive_int(flag, length)
        self._check_limits()
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError("--seed", self.seed, "an integer >= 0")
        check_positive_int("heartbeat_interval_s", self.heartbeat_interval_s)
        if not isinstance(self.grace_period_s, int) or self.grace_period_s <= self.heartbeat_interval_s:
            raise ConfigError("grace_period_s", self.grace_period_s, "an integer above heartbeat_interval_s")
        if isinstance(self.max_retry, bool) or not isinstance(self.max_retry, int) or self.max_retry < 0:
            raise ConfigError("max_retry", self.max_retry, "an integer >= 0")
        if self.study_name is not None and not self.study_name.strip():
            raise ConfigError("--study-name", self.study_name, "a non-empty name")

    def _check_limits(self) -> None:
        numbers = (
            ("--memory-limit-mb", self.memory_limit_mb),
            ("--p99-slo-ms", self.p99_slo_ms),
            ("--max-time", self.max_time_s),
        )
        for parameter, value in numbers:
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ConfigError(parameter, value, "a positive number (or none)")
        drop = self.max_accuracy_drop
        if drop is not None and (isinstance(drop, bool) or not isinstance(drop, (int, float)) or not 0 <= drop < 1):
            raise ConfigError("--max-accuracy-drop", drop, "a fraction in [0, 1) such as 0.01 (or none)")

    @property
    def needs_accuracy(self) -> bool:
        """Whether accuracy is part of the objective or of a constraint."""
        return self.objective == "multi" or self.max_accuracy_drop is not None
