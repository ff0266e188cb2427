"""What the pipeline tells its listeners, so that adapters (MLflow, Optuna, a progress bar) stay outside it.

The pipeline calls a listener as each step finishes, so a listener that logs right away never loses completed
work when a later case fails or the process is interrupted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

#: What tells two cases of one configuration apart: variant, runtime, precision, batch size.
CaseKey = tuple[str, str, str, int]

if TYPE_CHECKING:
    from mlperf_track.engine.result import BenchmarkResult
    from mlperf_track.models.artifact import ModelArtifact
    from mlperf_track.pipeline.config import PipelineConfig
    from mlperf_track.pipeline.load_sweep import LoadSweepOutcome
    from mlperf_track.spec import CaseSpec


def case_key(case: CaseSpec) -> CaseKey:
    """The case's key within its configuration (model, device, input size, threads, options are the same for all).

    ``channels_last`` is left out: it follows from the configuration and the runtime.
    """
    return (case.variant, case.runtime, case.precision, case.batch_size)


@dataclass
class CaseOutcome:
    """How one case ended.

    Attributes:
        case: The case.
        result: The measurement, or ``None`` when the case failed.
        error: The exception when the case failed, else ``None``.
        artifacts: Files produced for the case (raw samples CSV, result JSON, traces, flame graphs), by name.
    """

    case: CaseSpec
    result: BenchmarkResult | None = None
    error: BaseException | None = None
    artifacts: dict[str, Path] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the case produced a result."""
        return self.result is not None


@dataclass
class PipelineOutcome:
    """Every case outcome of one pipeline run, in the order they ran, and the load stage's sweep (``--scenario``)."""

    config: PipelineConfig
    outcomes: list[CaseOutcome] = field(default_factory=list)
    interrupted: bool = False
    load: LoadSweepOutcome | None = None

    @property
    def results(self) -> list[BenchmarkResult]:
        """The results of the cases that succeeded."""
        return [outcome.result for outcome in self.outcomes if outcome.result is not None]

    @property
    def failures(self) -> list[CaseOutcome]:
        """The cases that failed."""
        return [outcome for outcome in self.outcomes if outcome.error is not None]


class PipelineListener:
    """Receives pipeline events. Every method is a no-op here; adapters override what they need.

    Order: ``on_baseline_ready``, ``on_pipeline_start`` (once every variant is built), then
    ``on_case_resumed`` for each case an earlier run already measured (a resumed pipeline), then
    ``on_case_start``/``on_case_end`` per case, then ``on_pipeline_end``. A variant that failed to build
    appears as one case whose outcome carries the build error.
    """

    def on_baseline_ready(self, artifact: ModelArtifact, facts: dict[str, str]) -> None:
        """The baseline model is loaded (and fine-tuned when a labelled dataset is used)."""

    def on_pipeline_start(self, config: PipelineConfig, cases: list[CaseSpec]) -> None:
        """The plan is known: ``cases`` will run in this order."""

    def on_case_resumed(self, outcome: CaseOutcome) -> None:
        """A case an earlier run measured is taken over as it is (not measured again)."""

    def on_case_start(self, case: CaseSpec) -> None:
        """A case begins."""

    def on_case_end(self, outcome: CaseOutcome) -> None:
        """A case ended, with a result or an error."""

    def on_pipeline_end(self, outcome: PipelineOutcome) -> None:
        """Every case ended (also called after an interruption, with ``outcome.interrupted`` set)."""


class ListenerGroup(PipelineListener):
    """Forwards every event to several listeners, in order."""

    def __init__(self, *listeners: PipelineListener) -> None:
        self.listeners = list(listeners)

    def on_baseline_ready(self, artifact: ModelArtifact, facts: dict[str, str]) -> None:
        for listener in self.listeners:
            listener.on_baseline_ready(artifact, facts)

    def on_pipeline_start(self, config: PipelineConfig, cases: list[CaseSpec]) -> None:
        for listener in self.listeners:
            listener.on_pipeline_start(config, cases)

    def on_case_resumed(self, outcome: CaseOutcome) -> None:
        for listener in self.listeners:
            listener.on_case_resumed(outcome)

    def on_case_start(self, case: CaseSpec) -> None:
        for listener in self.listeners:
            listener.on_case_start(case)

    def on_case_end(self, outcome: CaseOutcome) -> None:
        for listener in self.listeners:
            listener.on_case_end(outcome)

    def on_pipeline_end(self, outcome: PipelineOutcome) -> None:
        for listener in self.listeners:
            listener.on_pipeline_end(outcome)
