"""What a study measures with: the real pipeline session, or anything with the same small surface.

:class:`TuningBackend` is the seam between the tuner and the hardware. :class:`SessionBackend` wraps a
:class:`~mlperf_track.pipeline.BenchmarkSession`; tests and the search-efficiency benchmark provide their own
(a deterministic fake, a replay of measured values).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from mlperf_track.spec import CaseSpec
from mlperf_track.tuning.choices import (
    BASELINE,
    Pins,
    UnsupportedReason,
    auto_precisions,
    enumerate_choices,
    runtime_unsupported_reason,
)
from mlperf_track.tuning.config import TuneConfig, parse_batch_sizes
from mlperf_track.tuning.space import SearchSpace

if TYPE_CHECKING:
    from mlperf_track.pipeline.events import CaseOutcome
    from mlperf_track.pipeline.session import BenchmarkSession
    from mlperf_track.runtimes.base import Runtime

logger = logging.getLogger(__name__)


class TuningBackend(Protocol):
    """Measures cases for a study and says what the search space is."""

    #: ``cpu`` or ``cuda`` (resolved).
    device: str

    @property
    def measures_accuracy(self) -> bool:
        """Whether cases report ``accuracy/*`` (a labelled dataset)."""
        ...

    def search_space(self) -> SearchSpace:
        """The valid space of this study."""
        ...

    def template(self) -> CaseSpec:
        """A case with the fields that do not vary between trials (model, device, image size, dataset)."""
        ...

    def measure(self, case: CaseSpec) -> CaseOutcome:
        """Measure ``case`` (never raises for the case's own failure) and release memory afterwards."""
        ...

    def close(self) -> None:
        """Release everything."""
        ...


def resolve_runtimes(names: Sequence[str], device: str) -> dict[str, Runtime]:
    """The runtimes by name; empty ``names`` means the device's default runtimes that are available here."""
    from mlperf_track.pipeline.defaults import auto_defaults
    from mlperf_track.runtimes.registry import get_runtime

    if names:
        return {name: get_runtime(name) for name in names}
    runtimes = {name: get_runtime(name) for name in auto_defaults(device)["runtimes"]}
    available = {name: runtime for name, runtime in runtimes.items() if runtime.unavailable_reason() is None}
    for name in set(runtimes) - set(available):
        logger.info("runtime %s left out: %s", name, runtimes[name].unavailable_reason())
    return available or runtimes


def build_space(
    config: TuneConfig,
    *,
    device: str,
    runtimes: dict[str, Runtime],
    precisions: Sequence[str],
    pins: Pins | None = None,
    unsupported_reason: UnsupportedReason | None = None,
) -> SearchSpace:
    """The search space of ``config`` on ``device`` (only runnable combinations).

    Raises:
        ConfigError: Nothing runnable is left, or ``--threads`` was given for a GPU.
    """
    from mlperf_track.errors import ConfigError

    if config.threads and device != "cpu":
        raise ConfigError("--threads", ",".join(map(str, config.threads)), hint="threads are searched on cpu only")
    reason = unsupported_reason or runtime_unsupported_reason(runtimes, device)
    choices, skipped = enumerate_choices(
        runtimes=list(runtimes),
        precisions=precisions,
        unsupported_reason=reason,
        variants=[name for name in (pins or {}) if name != BASELINE],
        pins=pins,
        compile_modes=config.compile_modes,
    )
    return SearchSpace(
        tuple(choices), parse_batch_sizes(config.batch_sizes, device), config.threads, skipped=tuple(skipped)
    )


class SessionBackend:
    """Measures with a :class:`BenchmarkSession` built from a :class:`TuneConfig`.

    Variants are built once, up front, so that the ones pinned to a runtime or precision (a quantized model)
    are searched only where they run. GPU memory is released after every trial.
    """

    def __init__(self, config: TuneConfig) -> None:
        from dataclasses import replace

        from mlperf_track.engine.device import resolve_device
        from mlperf_track.pipeline.config import PipelineConfig
        from mlperf_track.pipeline.defaults import auto_defaults
        from mlperf_track.pipeline.session import TEXT_PREFIXES, BenchmarkSession

        self.config = config
        self.device = resolve_device(config.device)
        defaults = auto_defaults(self.device)
        self.runtimes = resolve_runtimes(config.runtimes, self.device)
        self.precisions = config.precisions or auto_precisions(self.runtimes, self.device)
        timing = config.timing or defaults["timing"]
        if config.max_time_s is not None:
            timing = replace(timing, max_time_s=config.max_time_s)
        dataset = config.dataset
        if dataset.strip().lower() in ("", "auto"):
            labelled = "auto" if config.model.startswith(TEXT_PREFIXES) else defaults["dataset"]  # a text model's own
            dataset = labelled if (config.needs_accuracy or config.variants) else "synthetic"
        pipeline = PipelineConfig(
            model=config.model,
            weights=config.weights,
            device=self.device,
            variants=config.variants,
            runtimes=tuple(self.runtimes),
            precisions=tuple(self.precisions) or ("fp32",),
            batch_sizes=parse_batch_sizes(config.batch_sizes, self.device),
            image_size=config.image_size or defaults["image_size"],
            dataset=dataset,
            epochs=defaults["epochs"] if config.epochs is None else config.epochs,
            seq_lens=(config.seq_len,),
            prompt_lens=(config.prompt_len,),
            output_lens=(config.output_len,),
            timing=timing,
            seed=config.seed,
            output_dir=config.output_dir,
            trust_pickle=config.trust_pickle,
        )
        if config.cache_dir is not None:
            pipeline = replace(pipeline, cache_dir=config.cache_dir)
        self.pipeline = pipeline
        self.session: BenchmarkSession = BenchmarkSession(pipeline)
        self._last_prepared: tuple[object, ...] | None = None

    @property
    def measures_accuracy(self) -> bool:
        """Whether the dataset is labelled (accuracy is measured per prepared model)."""
        return self.pipeline.dataset != "synthetic" and self.session.data.has_labels

    def search_space(self) -> SearchSpace:
        """Builds the variants (once) to learn their pins, then enumerates the valid space.

        Raises:
            ConfigError: The model cannot be loaded (loaded here, so that a bad or unsafe model file is bad
                input before the study starts, not a failure of every trial); ModelLoadError likewise.
        """
        _ = self.session.loaded_model
        errors = self.session.build_variants()
        pins: dict[str, tuple[str | None, str | None]] = {BASELINE: (None, None)}
        for name in self.session.variants:
            if name not in errors:
                artifact = self.session.variant(name)
                pins[name] = (artifact.runtime, artifact.precision)
        for name, error in errors.items():
            logger.warning("variant %s is not searched: it could not be built (%s)", name, error)
        return build_space(
            self.config,
            device=self.device,
            runtimes=self.runtimes,
            precisions=self.precisions,
            pins=pins,
            unsupported_reason=self.session.unsupported_reason,
        )

    def template(self) -> CaseSpec:
        """The baseline case at the first batch size (a text model's first lengths); trials replace what they search."""
        pipeline = self.pipeline
        lengths = self.session.text.shapes()[0] if self.session.text is not None else {}
        return self.session.make_case(
            BASELINE, pipeline.runtimes[0], pipeline.precisions[0], pipeline.batch_sizes[0], **lengths
        )

    def measure(self, case: CaseSpec) -> CaseOutcome:
        """Run the case; prepared models are reused across batch sizes of one configuration."""
        from mlperf_track.engine.device import release_memory

        # The session keys prepared models on (variant, runtime, precision); options and threads change how a
        # runtime prepares (compile mode, ONNX Runtime intra-op threads), so a change of those re-prepares.
        prepared = (case.variant, case.runtime, case.precision, case.options, case.num_threads)
        last = self._last_prepared
        if last is not None and prepared[:3] == last[:3] and prepared != last:
            self.session.release()
        self._last_prepared = prepared
        try:
            return self.session.run_case(case)
        finally:
            release_memory(self.device)

    def close(self) -> None:
        """Release every prepared model."""
        self.session.close()
