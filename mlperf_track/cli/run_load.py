"""``mlperf-track run --scenario ...``: the pipeline's load stage, from the option table's flags to MLflow.

After every case is measured, the case the run recommends (:func:`mlperf_track.cli.console.outcome_recommendation`)
is served under load in the same process (:mod:`mlperf_track.pipeline.load_stage`); each load point is a child run
of the pipeline's parent, and the parent gets ``best/max_qps`` and the latency-vs-load, latency CDF and
queueing-vs-compute figures (:mod:`mlperf_track.tracking.load_run`). Without ``--scenario`` nothing here runs.
"""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

from mlperf_track.cli.options import read
from mlperf_track.errors import ConfigError
from mlperf_track.pipeline.events import PipelineListener
from mlperf_track.pipeline.load_sweep import LoadListener, LoadPoint

if TYPE_CHECKING:
    from mlperf_track.pipeline.config import PipelineConfig
    from mlperf_track.pipeline.events import PipelineOutcome
    from mlperf_track.pipeline.load_stage import LoadStage
    from mlperf_track.spec import CaseSpec

logger = logging.getLogger(__name__)

#: The role tag of a load point's child run under a pipeline parent (reports of cases skip it).
LOAD_POINT_ROLE = "load_point"
#: The load stage's options besides ``scenario`` (rows of :mod:`mlperf_track.cli.options`).
LOAD_OPTIONS = (
    "rate",
    "latency_bound_ms",
    "min_duration",
    "concurrency",
    "max_batch_size",
    "max_queue_delay_ms",
    "load_workers",
)
#: The parent's tag saying why the load stage did not run.
LOAD_NOTE_TAG = "note.load"


def one_value(flag: str, values: tuple[float, ...] | tuple[int, ...]) -> float:
    """The single value a list option must hold for ``run`` (``tune`` searches a list)."""
    if len(values) != 1:
        raise ConfigError(flag, ",".join(f"{value:g}" for value in values), "one value for run (tune searches a list)")
    return values[0]


def load_stage_from_args(args: argparse.Namespace, config: PipelineConfig) -> LoadStage | None:
    """The load stage ``--scenario`` asks for (``None`` without one); every flag is checked now, before any case.

    Raises:
        ConfigError: A bad load flag, the server scenario without ``--latency-bound-ms``, or a text model.
    """
    from mlperf_track.engine.load.config import SERVER, DeploymentConfig, LoadConfig
    from mlperf_track.engine.load.search import SearchConfig
    from mlperf_track.pipeline.load_stage import LoadStage
    from mlperf_track.spec import TEXT_MODEL_PREFIXES

    scenario = read(args, "scenario")
    # Every load flag is checked, even without --scenario (a typo must not pass silently until it matters).
    values = {name: read(args, name) for name in LOAD_OPTIONS}
    deployment = DeploymentConfig(
        workers=int(one_value("--load-workers", values["load_workers"])),
        max_batch_size=int(one_value("--max-batch-size", values["max_batch_size"])),
        max_queue_delay_ms=float(one_value("--max-queue-delay-ms", values["max_queue_delay_ms"])),
    )
    if scenario is None:
        return None
    if str(config.model).startswith(TEXT_MODEL_PREFIXES):
        raise ConfigError("--scenario", scenario, "none for a text model (the load stage serves image models)")
    bound = values["latency_bound_ms"]
    if scenario == SERVER and bound is None:
        raise ConfigError("--latency-bound-ms", None, "a positive number of milliseconds (the server scenario)")
    rates = tuple(values["rate"] or ()) if scenario == SERVER else ()
    load_config = LoadConfig(
        scenario=scenario,
        target_qps=rates[0] if rates else (1.0 if scenario == SERVER else None),
        latency_bound_ms=bound,
        concurrency=values["concurrency"],
        min_duration_s=values["min_duration"],
        seed=config.seed,
    )
    search = SearchConfig() if scenario == SERVER and not rates else None
    return LoadStage(load_config, deployment, rates=rates, search=search, pick=recommended_case)


def recommended_case(outcome: PipelineOutcome) -> CaseSpec | None:
    """The case the run recommends (the one the console and the parent run name best).

    When none qualifies (every measurement invalid on a noisy machine, say), the fastest case that produced a
    result is served instead, with a warning: the user asked for the load figures, and the load points carry
    their own validity. ``None`` only when no case produced a result.
    """
    from mlperf_track import metrics as m
    from mlperf_track.cli.console import outcome_recommendation

    best = outcome_recommendation(outcome).best
    if best is not None:
        return next((item.case for item in outcome.outcomes if item.case.name == best.name), None)
    measured = [item for item in outcome.outcomes if item.result is not None]
    if not measured:
        return None
    fastest = max(measured, key=lambda item: item.result.metrics.get(m.THROUGHPUT, 0.0) if item.result else 0.0)
    logger.warning(
        "no case qualifies as best (see the recommendation); the load stage serves the fastest measured case, %s",
        fastest.case.name,
    )
    return fastest.case


class TrackedLoadStage(PipelineListener, LoadListener):
    """Logs the load stage under the pipeline's parent run: a child per point, then the parent's summary.

    The parent is the active MLflow run when the pipeline starts (``on_pipeline_start``); its summary
    (``best/max_qps``, figures) is logged in ``on_pipeline_end``, before the parent ends.
    """

    def __init__(self, echo: LoadListener | None = None) -> None:
        self.parent_run_id: str | None = None
        self.echo = echo
        self._points: LoadListener | None = None

    def on_pipeline_start(self, config: PipelineConfig, cases: list[CaseSpec]) -> None:
        """Remember the parent run."""
        import mlflow

        active = mlflow.active_run()
        self.parent_run_id = active.info.run_id if active is not None else None

    def point_finished(self, point: LoadPoint) -> None:
        """Log the point as a child run of the parent (tagged ``mlperf_track.role=load_point``)."""
        import mlflow

        from mlperf_track.tracking.load_run import MlflowLoadListener
        from mlperf_track.tracking.pipeline_run import ROLE_TAG

        if self.echo is not None:
            self.echo.point_finished(point)
        if self.parent_run_id is None:
            logger.warning("load point %s not logged: no parent run", point.label)
            return
        if not isinstance(self._points, MlflowLoadListener):
            self._points = MlflowLoadListener(self.parent_run_id)
        try:
            self._points.point_finished(point)
            run_id = self._points.child_runs.get(point.label)
            if run_id is not None:
                mlflow.MlflowClient().set_tag(run_id, ROLE_TAG, LOAD_POINT_ROLE)
        except Exception as error:  # the store went away: the point is printed, the sweep goes on
            logger.warning("could not log load point %s: %s", point.label, error, exc_info=True)

    def on_pipeline_end(self, outcome: PipelineOutcome) -> None:
        """``best/max_qps`` and the load figures on the parent (a note saying why when the stage did not run)."""
        if self.parent_run_id is None or outcome.interrupted:
            return
        import mlflow

        from mlperf_track.tracking.load_run import log_sweep_summary

        try:
            if outcome.load is None:
                note = "the load scenario did not run: no case produced a result to serve"
                mlflow.MlflowClient().set_tag(self.parent_run_id, LOAD_NOTE_TAG, note)
                return
            log_sweep_summary(outcome.load, self.parent_run_id)
        except Exception as error:  # the cases are logged; a summary that fails must not fail the run
            logger.warning("could not log the load summary on the parent run: %s", error, exc_info=True)
