"""What a study measures with: the real pipeline session, or anything with the same small surface.

:class:`TuningBackend` is the seam between the tuner and the hardware. :class:`SessionBackend` wraps a
:class:`~mlperf_track.pipeline.BenchmarkSession`; tests and the search-efficiency benchmark provide their own
(a deterministic fake, a replay of measured values). Besides ``measure``, a backend may offer ``last_costs``
(the preparation and measurement seconds of its last call), ``is_prepared``/``has_variant`` (whether a point
would need preparing), ``clock`` (its notion of time, simulated in a replay) and take ``timing=`` in
``measure`` (the short first measurement); the tuner uses whatever it finds.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

from mlperf_track.spec import CaseSpec, TimingConfig
from mlperf_track.tuning.choices import BASELINE, Pins, UnsupportedReason, enumerate_choices, with_compositions
from mlperf_track.tuning.config import TuneConfig
from mlperf_track.tuning.costs import TrialCosts
from mlperf_track.tuning.space import SearchSpace
from mlperf_track.variants.compose import prefixes

if TYPE_CHECKING:
    from mlperf_track.pipeline.events import CaseOutcome
    from mlperf_track.pipeline.session import BenchmarkSession
    from mlperf_track.runtimes.base import Runtime

logger = logging.getLogger(__name__)

#: Engine tags whose seconds are measurement (warm-up and timed windows); the rest of a call is preparation.
_WINDOW_TAGS = ("engine.warmup_s", "engine.window_s", "engine.throughput_window_s")


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


def build_space(
    config: TuneConfig,
    *,
    device: str,
    runtimes: dict[str, Runtime],
    pins: Pins,
    unsupported_reason: UnsupportedReason,
) -> SearchSpace:
    """The search space of ``config`` on ``device`` (only runnable combinations).

    Raises:
        ConfigError: Nothing runnable is left, or ``--threads`` was given for a GPU.
    """
    from mlperf_track.errors import ConfigError

    search, pipeline = config.search, config.pipeline
    if search.threads and device != "cpu":
        raise ConfigError("--threads", ",".join(map(str, search.threads)), hint="threads are searched on cpu only")
    if search.threads and pipeline.num_threads is not None:
        raise ConfigError("--threads", ",".join(map(str, search.threads)), hint="--num-threads fixes them: give one")
    choices, skipped = enumerate_choices(
        runtimes=runtimes,
        precisions=[precision for precision in pipeline.precisions if precision not in ("int8", "fp8")],
        device=device,
        unsupported_reason=unsupported_reason,
        variants=[name for name in pins if name != BASELINE],
        pins=pins,
        option_values=search.option_value_dict,
        fixed_options=[key for key, _ in pipeline.options],
    )
    return SearchSpace(tuple(choices), pipeline.batch_sizes, search.threads, skipped=tuple(skipped))


class SessionBackend:
    """Measures with a :class:`BenchmarkSession` built from a :class:`TuneConfig`.

    The baseline is prepared up front (the study's first cost); variants are built when a trial first needs
    one, so a study that never proposes the distilled model never trains it, and the build is the cost of the
    trial that asked for it. Pins (runtime, precision) come from the variants' declarations. Prepared models
    are kept between trials as :class:`~mlperf_track.pipeline.case_runner.PreparePolicy` says: a runtime that
    compiles per batch size prepares only the trial's.
    """

    def __init__(self, config: TuneConfig) -> None:
        from mlperf_track.pipeline.case_runner import PreparePolicy
        from mlperf_track.pipeline.session import BenchmarkSession
        from mlperf_track.variants.registry import resolve_variants

        self.config = config
        pipeline = config.pipeline
        self.device = pipeline.device
        recipes = resolve_variants(pipeline.variants, self.device) if pipeline.variants else []
        if config.search.compositions:
            recipes = [
                recipe for recipe in with_compositions(recipes) if recipe.unavailable_reason(self.device) is None
            ]
        names = tuple(recipe.name for recipe in recipes)
        keep = config.search.keep_prepared
        if keep is None:
            keep = 2 if self.device == "cpu" and config.search.memory_limit_mb is None else 1
        policy = PreparePolicy(per_case_batch=True, keep=keep)
        self.pipeline = replace(pipeline, variants=names)
        self.session: BenchmarkSession = BenchmarkSession(self.pipeline, prepare_policy=policy)
        self._costs: TrialCosts | None = None
        self.clock = time.monotonic

    @property
    def measures_accuracy(self) -> bool:
        """Whether accuracy is measured (a labelled dataset and the pipeline's ``measure_accuracy``)."""
        return self.pipeline.dataset != "synthetic" and self.pipeline.measure_accuracy and self.session.data.has_labels

    def search_space(self) -> SearchSpace:
        """Prepares the baseline (and its reference accuracy), then enumerates the valid space."""
        self.session.baseline()
        if self.measures_accuracy:
            self.session.reference_accuracy()
        pins: dict[str, tuple[str | None, str | None]] = {BASELINE: (None, None)}
        pins.update({name: (v.pinned_runtime, v.pinned_precision) for name, v in self.session.variants.items()})
        runtimes = {name: self.session.runtime(name) for name in self.pipeline.runtimes}
        return build_space(
            self.config,
            device=self.device,
            runtimes=runtimes,
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

    def is_prepared(self, case: CaseSpec) -> bool:
        """Whether the prepared model of ``case`` is open now (its next trial prepares nothing)."""
        return self.session.prepared_model(case) is not None

    def has_variant(self, name: str) -> bool:
        """Whether variant ``name`` is built."""
        return self.session.has_variant(name)

    def last_costs(self) -> TrialCosts | None:
        """The costs of the last :meth:`measure` call."""
        return self._costs

    def measure(self, case: CaseSpec, timing: TimingConfig | None = None) -> CaseOutcome:
        """Build the variant if needed, then run the case (at ``timing``, else the pipeline's); time both."""
        from mlperf_track.engine.device import release_memory
        from mlperf_track.pipeline.events import CaseOutcome

        start = time.perf_counter()
        unbuilt = tuple(name for name in prefixes(case.variant) if not self.has_variant(name))
        try:
            self.session.variant(case.variant)
        except Exception as error:  # the build's own failure: the trial fails, the study goes on
            elapsed = time.perf_counter() - start
            self._costs = TrialCosts(elapsed, 0.0, elapsed, prepared=True, stage="variant", built=unbuilt)
            return CaseOutcome(case, error=error)
        built = time.perf_counter() - start
        was_prepared = self.is_prepared(case)
        try:
            outcome = self.session.run_case(case, timing=timing)
        finally:
            release_memory(self.device)
        call = time.perf_counter() - start - built
        window = _window_s(outcome)
        measured = min(call, window) if window is not None else (call if was_prepared else 0.0)
        preparation = 0.0 if was_prepared else call - measured
        self._costs = TrialCosts(
            prepare_s=built + preparation,
            measure_s=call - preparation,
            variant_build_s=built,
            prepared=not was_prepared,
            stage="" if outcome.result is not None else "case",
            built=unbuilt,
        )
        return outcome

    def close(self) -> None:
        """Release every prepared model."""
        self.session.close()


def _window_s(outcome: CaseOutcome) -> float | None:
    """Seconds of warm-up and timed windows of a measured case (``None`` when it failed)."""
    if outcome.result is None:
        return None
    total = 0.0
    for tag in _WINDOW_TAGS:
        try:
            total += float(outcome.result.tags.get(tag, 0.0))
        except ValueError:
            continue
    return total if total > 0 else None
