"""The configuration of one pipeline run: which cases to measure and how."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mlperf_track.errors import ConfigError
from mlperf_track.spec import (
    DEVICES,
    PRECISIONS,
    TRAIN_PRECISION_CHOICES,
    TimingConfig,
    check_choice,
    check_positive_int,
)


def default_cache_dir() -> Path:
    """Where prepared baselines, exports and engines are cached (``$MLPERF_TRACK_CACHE`` or ``~/.cache``)."""
    import os

    root = os.environ.get("MLPERF_TRACK_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "mlperf_track"


@dataclass(frozen=True)
class PipelineConfig:
    """Everything one pipeline run needs. Validated on construction; nothing is loaded here.

    The measured cases are the product variants x runtimes x precisions x batch sizes, minus combinations
    a runtime declares it cannot run (a variant fixed to a runtime or precision, such as int8 PT2E under
    ``compile``, uses that one).

    Attributes:
        model: Model reference (torchvision name, file path, ``models:/`` or ``runs:/`` URI).
        weights: Weights file for a torchvision model, or ``None`` (torch cache if present, else random).
        device: ``auto``, ``cpu`` or ``cuda``.
        variants: Variant names; the baseline is always measured.
        runtimes: Runtime names.
        precisions: Precisions.
        batch_sizes: Batch sizes.
        image_size: Input resolution.
        dataset: Dataset reference for fine-tuning, calibration and accuracy (``synthetic``: none).
        epochs: Training of the baseline on a labelled dataset: ``None`` trains until its holdout top-1 stops
            improving (early stopping, best epoch kept, capped in epochs and time); ``"auto"`` is accepted for
            it and stored as ``None``. An integer trains exactly that many epochs (0: use the weights as they
            are). Variants that retrain follow: early stopping with ``None``, fixed epochs otherwise.
        train_precision: Precision of that training and of the variants' retraining (image models; text
            models train in fp32): ``auto`` (bf16 mixed precision where the device computes bf16 natively, else
            fp32), ``fp32`` or ``bf16``. Logged as ``baseline.train_precision`` and
            ``artifact.variant.train_precision``; part of the cache keys.
        num_threads: CPU threads, or ``None`` for torch's default.
        channels_last: Use channels-last memory format.
        options: Runtime and variant options as ``(key, value)`` pairs.
        timing: How long to measure each case.
        seed: Seed for data splits, training and synthetic inputs.
        profile: Also record a torch.profiler trace and flame graph per case.
        measure_accuracy: Measure accuracy when the dataset has labels.
        cache_dir: Cache for prepared baselines, exports and engines.
        output_dir: The output folder. Each process writes its per-case files (raw samples, result JSON, traces)
            in a private folder under it (:mod:`~mlperf_track.pipeline.workdir`); kept case folders are published
            to ``<output_dir>/<case>/``.
        max_accuracy_drop: Largest top-1 drop (a fraction: 0.01 = 1 point) below the baseline that a case may
            lose and still be named best; ``None`` puts no limit on accuracy.
        repeats: Interleaved replicates of every case, merged into one result with their between-replicate
            spread (1: measure each case once).
        pin_cores: CPU cores the process is pinned to while measuring, or ``None`` to leave affinity alone.
        keep_files: Keep each case's files in ``<output_dir>/<case>/`` once the case is reported; ``False``
            deletes them (they were logged to MLflow); ``None`` (the default): keep them when nothing logs them
            (:func:`~mlperf_track.pipeline.run_pipeline`), delete them once logged
            (:func:`~mlperf_track.tracking.pipeline_run.run_tracked_pipeline`).
        trust_pickle: Allow model and weights files that run code when loaded (full-model pickles, TorchScript);
            see :mod:`mlperf_track.models.safety`.
        seq_lens: Sequence lengths a text encoder is measured at (ignored for other models).
        prompt_lens: Prompt lengths a text decoder generates after (ignored for other models).
        output_lens: New tokens a text decoder generates per prompt (ignored for other models).
    """

    model: str
    weights: str | None = None
    device: str = "auto"
    variants: tuple[str, ...] = ()
    runtimes: tuple[str, ...] = ("eager",)
    precisions: tuple[str, ...] = ("fp32",)
    batch_sizes: tuple[int, ...] = (1,)
    image_size: int = 224
    dataset: str = "synthetic"
    epochs: int | None = None
    train_precision: str = "auto"
    num_threads: int | None = None
    channels_last: bool = False
    options: tuple[tuple[str, str], ...] = ()
    timing: TimingConfig = field(default_factory=TimingConfig)
    seed: int = 0
    profile: bool = False
    measure_accuracy: bool = True
    cache_dir: Path = field(default_factory=default_cache_dir)
    output_dir: Path = Path("mlperf_track_output")
    max_accuracy_drop: float | None = 0.01
    repeats: int = 1
    pin_cores: tuple[int, ...] | None = None
    keep_files: bool | None = None
    trust_pickle: bool = False
    seq_lens: tuple[int, ...] = (128,)
    prompt_lens: tuple[int, ...] = (128,)
    output_lens: tuple[int, ...] = (64,)

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("model", self.model, "a model name, file or URI")
        check_choice("device", self.device, DEVICES)
        for precision in self.precisions:
            check_choice("precision", precision, PRECISIONS)
        if not self.runtimes:
            raise ConfigError("runtime", "", "at least one runtime")
        if not self.precisions:
            raise ConfigError("precision", "", "at least one precision")
        if not self.batch_sizes:
            raise ConfigError("batch_size", "", "at least one positive integer")
        for batch_size in self.batch_sizes:
            check_positive_int("batch_size", batch_size)
        check_positive_int("image_size", self.image_size)
        if isinstance(self.epochs, str) and self.epochs.strip().lower() == "auto":
            object.__setattr__(self, "epochs", None)
        if self.epochs is not None and (
            isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 0
        ):
            raise ConfigError(
                "epochs", self.epochs, "an integer >= 0, or auto (train until the holdout accuracy stops rising)"
            )
        check_choice("train_precision", self.train_precision, TRAIN_PRECISION_CHOICES)
        if self.num_threads is not None:
            check_positive_int("num_threads", self.num_threads)
        if self.max_accuracy_drop is not None and (
            isinstance(self.max_accuracy_drop, bool)
            or not isinstance(self.max_accuracy_drop, (int, float))
            or not 0 <= self.max_accuracy_drop <= 1
        ):
            raise ConfigError("max_accuracy_drop", self.max_accuracy_drop, "a fraction in [0, 1] (0.01 = 1 point)")
        check_positive_int("repeats", self.repeats)
        for name, values in (
            ("seq_len", self.seq_lens),
            ("prompt_len", self.prompt_lens),
            ("output_len", self.output_lens),
        ):
            if not values:
                raise ConfigError(name, "", "at least one positive integer")
            for value in values:
                check_positive_int(name, value)
        if self.pin_cores is not None:
            if not self.pin_cores:
                raise ConfigError("pin_cores", "", "a non-empty list of CPU core numbers")
            for core in self.pin_cores:
                if isinstance(core, bool) or not isinstance(core, int) or core < 0:
                    raise ConfigError("pin_cores", core, "CPU core numbers >= 0")
        if self.keep_files is not None and not isinstance(self.keep_files, bool):
            raise ConfigError("keep_files", self.keep_files, "true, false or none (keep unless logged)")
        object.__setattr__(self, "options", tuple(sorted((str(k), str(v)) for k, v in self.options)))

    @property
    def option_dict(self) -> dict[str, str]:
        """The options as a dict."""
        return dict(self.options)

    @property
    def runtime_cache_dir(self) -> Path:
        """Where runtimes keep exports and engines (shared by every case and by the recipes' ONNX exports)."""
        return self.cache_dir / "runtimes"
