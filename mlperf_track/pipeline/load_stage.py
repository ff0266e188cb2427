"""The pipeline's load stage (``--scenario``): after every case is measured, serve one case under load.

Which case: the one the caller picks (the CLI passes the recommendation, the case the run says to ship); without
a pick, the best case by the eligibility rule of :mod:`mlperf_track.engine.eligibility` (the fastest valid case
within the run's accuracy limit). One case rather than each: a ``max_qps`` search costs a dozen
load points of ``min_duration`` seconds each, so a sweep per case would multiply the run's wall time by the
number of cases, and the question an engineer asks after the pipeline ("what rate does the configuration I
ship sustain under my latency bound?") is about the one configuration they ship.

The case is served from the session's own artifact (a variant is not rebuilt), prepared again by its runtime
for batches of up to the deployment's ``max_batch_size`` (the case's batch size is the pipeline's offline
batch; under load, the dynamic batcher forms the batches). The sweep itself is
:func:`~mlperf_track.pipeline.load_sweep.run_load_plan`: each point goes to the stage's listener as it finishes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mlperf_track.engine.load.config import DeploymentConfig, LoadConfig
from mlperf_track.engine.load.search import SearchConfig
from mlperf_track.engine.ranking import rank
from mlperf_track.pipeline.candidates import from_outcome, outcome_limits
from mlperf_track.pipeline.load_sweep import LoadListener, LoadPlan, LoadSweepOutcome, run_load_plan
from mlperf_track.pipeline.load_target import OpenTarget, open_prepared

if TYPE_CHECKING:
    from mlperf_track.pipeline.events import PipelineOutcome
    from mlperf_track.pipeline.session import BenchmarkSession
    from mlperf_track.spec import CaseSpec

logger = logging.getLogger(__name__)

#: Picks the case to serve from the pipeline's outcome (``None``: no case qualifies).
CasePicker = Callable[["PipelineOutcome"], "CaseSpec | None"]


def fastest_valid_case(outcome: PipelineOutcome) -> CaseSpec | None:
    """The best case by the eligibility rule (the default pick), or ``None`` when no case is eligible.

    The rule is :func:`mlperf_track.engine.eligibility.judge`'s, the one the console's recommendation, the
    parent run and the report apply: finished, a valid measurement, throughput measured, within the run's
    accuracy limit; the best is the fastest (:func:`mlperf_track.engine.ranking.rank`).
    """
    pairs = [(from_outcome(item), item.case) for item in outcome.outcomes]
    best = rank([candidate for candidate, _ in pairs], outcome_limits(outcome)).best
    return next((case for candidate, case in pairs if candidate is best), None)


@dataclass(frozen=True)
class LoadStage:
    """What the load stage runs.

    Attributes:
        config: The scenario (for Server, ``target_qps`` is replaced by each rate or the search's probes).
        deployment: Queue, workers and dynamic batching of the served case.
        rates: Server rates to run; empty for Server: search ``max_qps``.
        search: How to search ``max_qps`` (``None``: the defaults, start calibrated).
        pick: Which case to serve (``None``: :func:`fastest_valid_case`).
        listener: Receives every load point as it finishes (MLflow logs a child run each).
    """

    config: LoadConfig
    deployment: DeploymentConfig = field(default_factory=DeploymentConfig)
    rates: tuple[float, ...] = ()
    search: SearchConfig | None = None
    pick: CasePicker | None = None
    listener: LoadListener | None = None


@dataclass(frozen=True)
class SessionCaseTarget:
    """A case of an open session, as a load target (not picklable: memory-limited points are not offered)."""

    session: BenchmarkSession
    case: CaseSpec

    @property
    def device(self) -> str:
        """Where the case runs."""
        return self.case.device

    @property
    def name(self) -> str:
        """The case's configuration, ``resnet18 quantized/onnxruntime/int8``."""
        return f"{self.case.model} {self.case.variant}/{self.case.runtime}/{self.case.precision}"

    @contextlib.contextmanager
    def open(self, max_batch_size: int) -> Iterator[OpenTarget]:
        """Prepare the case's artifact for batches of up to ``max_batch_size``."""
        case = self.case
        artifact = self.session.variant(case.variant)
        with open_prepared(
            self.session, artifact, case.runtime, case.precision, max_batch_size, options=case.options
        ) as opened:
            opened.tags.update({"load.case": case.name, "load.variant": case.variant})
            yield opened


def run_load_stage(session: BenchmarkSession, outcome: PipelineOutcome, stage: LoadStage) -> LoadSweepOutcome | None:
    """Serve the picked case of ``outcome`` under ``stage``'s load; ``None`` when no case qualifies.

    Failed load points are kept in the sweep (never raised), as in :func:`run_load_plan`.
    """
    case = (stage.pick or fastest_valid_case)(outcome)
    if case is None:
        logger.warning("the load scenario did not run: no measured case qualifies to be served")
        return None
    logger.info("load scenario %s on %s", stage.config.scenario, case.name)
    plan = LoadPlan(
        target=SessionCaseTarget(session, case),
        config=stage.config,
        deployment=stage.deployment,
        rates=stage.rates,
        search=stage.search,
    )
    from mlperf_track.pipeline.session import cpu_threads

    session.release()  # the cases' prepared models: only the served one is needed now
    with cpu_threads(case.num_threads):
        return run_load_plan(plan, stage.listener)
