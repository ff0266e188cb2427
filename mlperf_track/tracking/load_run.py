"""A load sweep in MLflow: one parent run, one child run per load point, figures and ``best/max_qps``.

Parent (the run ``mlflow run`` made, or a new one tagged ``mlperf_track.role=load``):
  params   the target, the scenario, the deployment and the resource limits
  metrics  ``best/max_qps`` (when a search found one: the rate the best passing probe's schedule offered, as
           LoadGen reports it; its target rate is the tag ``load.search.target_qps``), and
           ``best/max_qps_background`` under injected load
  tags     ``load.search.stop_reason``, ``load.search.bracket``, hardware and software facts
  figures  ``figures/latency_vs_load.png``, ``figures/latency_cdf.png``, ``figures/queue_vs_compute.png``
  table    ``load_points.json`` (one row per point, appended as points finish)

Child (one per point, named by the point: ``server@20qps``): its params, every ``load/*`` metric, the
``valid``/``valid.reasons`` tags, notes and warnings, and ``queries.csv`` (every query's timestamps) and
``load_result.json``. A point that failed (killed by its memory limit) is a FAILED child with ``error.type``
and ``error.message``; the sweep goes on.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlperf_track import metrics as m
from mlperf_track.interrupts import release_unwound_frames
from mlperf_track.pipeline.load_sweep import LoadListener, LoadPlan, LoadPoint, LoadSweepOutcome, run_load_plan
from mlperf_track.tracking import logging as tracking_logging
from mlperf_track.tracking.context import hardware_software_tags
from mlperf_track.tracking.pipeline_run import ROLE_TAG, end_open_runs, fail_parent
from mlperf_track.tracking.setup import configure_tracking

if TYPE_CHECKING:
    from mlflow import MlflowClient

logger = logging.getLogger(__name__)

FIGURE_DIR = "figures"
POINTS_TABLE = "load_points.json"
QUERIES_FILE = "queries.csv"
RESULT_FILE = "load_result.json"


def plan_params(plan: LoadPlan) -> dict[str, str]:
    """The sweep as parent params."""
    params = {
        "model": plan.target.name,
        "load.scenario": plan.config.scenario,
        "load.rates": ",".join(f"{rate:g}" for rate in plan.rates) or _default_rates(plan),
        "load.background": plan.background.spec,
        **plan.deployment.params(),
        **plan.limits.params(),
    }
    if plan.config.latency_bound_ms is not None:
        params["load.latency_bound_ms"] = f"{plan.config.latency_bound_ms:g}"
    return params


def _default_rates(plan: LoadPlan) -> str:
    return "max_qps search" if plan.config.scenario == "server" else "-"


def point_row(point: LoadPoint, run_id: str | None) -> dict[str, Any]:
    """One row of the parent's ``load_points.json`` table."""
    row: dict[str, Any] = {"point": point.label, "run_id": run_id, "background": point.loaded}
    if point.result is None:
        row["verdict"] = "FAILED"
        row["reason"] = f"{type(point.error).__name__}: {point.error}" if point.error else "no result"
        return row
    result = point.result
    row["verdict"] = result.verdict
    row["reason"] = "; ".join(result.invalid_reasons)
    for key in (m.LOAD_OFFERED_QPS, m.LOAD_ACHIEVED_QPS, m.LOAD_LATENCY_P99, m.LOAD_QUEUE_P99, m.LOAD_COMPUTE_P99):
        row[key] = result.metrics.get(key)
    return row


class MlflowLoadListener(LoadListener):
    """Logs each finished load point as a child run of ``parent_run_id``."""

    def __init__(self, parent_run_id: str) -> None:
        self.parent_run_id = parent_run_id
        self.rows: list[dict[str, Any]] = []
        self.child_runs: dict[str, str] = {}

    @property
    def client(self) -> MlflowClient:
        """A client for the current tracking URI."""
        import mlflow

        return mlflow.MlflowClient()

    def point_finished(self, point: LoadPoint) -> None:
        """Log the point's child run (FAILED with the error when it has no result) and its table row."""
        import mlflow
        import pandas as pd

        run = mlflow.start_run(run_name=point.label, nested=True, parent_run_id=self.parent_run_id)
        self.child_runs[point.label] = run.info.run_id
        try:
            if point.result is None:
                mlflow.log_params(point.config.params())
                error = point.error or RuntimeError("no result")
                mlflow.set_tags({**tracking_logging.error_tags(error), "load.background": str(point.loaded).lower()})
                mlflow.end_run(status="FAILED")
            else:
                _log_point_result(point)
                mlflow.end_run(status="FINISHED")
        except BaseException:
            if (active := mlflow.active_run()) is not None and active.info.run_id == run.info.run_id:
                mlflow.end_run(status="FAILED")
            raise
        row = point_row(point, self.child_runs[point.label])
        self.rows.append(row)
        self.client.log_table(self.parent_run_id, pd.DataFrame([row]), POINTS_TABLE)


def _log_point_result(point: LoadPoint) -> None:
    """Params, metrics and tags in one batch, then the per-query table and the result JSON."""
    import mlflow
    from mlflow.entities import Metric, Param, RunTag

    result = point.result
    assert result is not None
    run_id = tracking_logging.active_run_or_raise().info.run_id
    tags = {**hardware_software_tags(), **result.tags, "load.background": str(point.loaded).lower()}
    tags.update({f"note.{key}": note for key, note in result.notes.items()})
    if result.warnings:
        tags["warnings"] = "; ".join(result.warnings)
    tags[m.VALID_TAG] = str(result.valid).lower()
    if result.invalid_reasons:
        tags[m.VALID_REASONS_TAG] = "; ".join(result.invalid_reasons)
    now_ms = int(time.time() * 1000)
    mlflow.MlflowClient().log_batch(
        run_id,
        metrics=[Metric(key, float(value), now_ms, 0) for key, value in result.metrics.items()],
        params=[Param(key, value) for key, value in result.params().items()],
        tags=[RunTag(key, tracking_logging.clip(str(value))) for key, value in tags.items()],
    )
    with tempfile.TemporaryDirectory(prefix="mlperf_track_load_") as tmp:
        mlflow.log_artifact(str(result.write_queries_csv(Path(tmp) / QUERIES_FILE)))
        mlflow.log_artifact(str(result.write_json(Path(tmp) / RESULT_FILE)))


def log_sweep_summary(outcome: LoadSweepOutcome, parent_run_id: str) -> None:
    """``best/max_qps``, the search's facts and the three figures on the parent (a failing step only warns)."""
    import mlflow
    from mlflow.entities import Metric, RunTag

    from mlperf_track.tracking import load_plots

    client = mlflow.MlflowClient()
    now_ms = int(time.time() * 1000)
    metrics, tags = [], []
    for search, key, prefix in (
        (outcome.search, m.BEST_MAX_QPS, "load.search"),
        (outcome.loaded_search, m.BEST_MAX_QPS_BACKGROUND, "load.search_background"),
    ):
        if search is None:
            continue
        tags += [RunTag(f"{prefix}.stop_reason", search.stop_reason)]
        tags += [RunTag(f"{prefix}.probes", str(len(search.probes)))]
        if search.max_qps is not None:
            scheduled = search.max_scheduled_qps
            metrics.append(Metric(key, scheduled if scheduled is not None else search.max_qps, now_ms, 0))
            tags.append(RunTag(f"{prefix}.target_qps", f"{search.max_qps:.6g}"))
            failing = f"{search.lowest_failing:.4g}" if search.lowest_failing else ""
            tags.append(RunTag(f"{prefix}.bracket", f"{search.max_qps:.4g}..{failing}"))
        else:
            tags.append(RunTag(f"note.{key}", f"no rate down to the search's minimum passed ({search.stop_reason})"))
    if metrics or tags:
        client.log_batch(parent_run_id, metrics=metrics, tags=tags)
    points = [(point.result, point.loaded) for point in outcome.points if point.result is not None]
    if not points:
        return
    bound = outcome.plan.config.latency_bound_ms
    figures = {
        "latency_vs_load": lambda: load_plots.latency_vs_load(points, bound),
        "latency_cdf": lambda: load_plots.latency_cdf(points),
        "queue_vs_compute": lambda: load_plots.queue_compute_split(points),
    }
    for stem, build in figures.items():
        try:
            client.log_figure(parent_run_id, build(), f"{FIGURE_DIR}/{stem}.png", save_kwargs={"bbox_inches": "tight"})
        except Exception as error:  # a figure must never hide the measured points
            logger.warning("could not log the figure %s: %s", stem, error, exc_info=True)


def run_tracked_load_plan(
    plan: LoadPlan,
    *,
    experiment: str | None = None,
    run_name: str | None = None,
    extra_tags: dict[str, str] | None = None,
    extra_listener: LoadListener | None = None,
) -> LoadSweepOutcome:
    """Run ``plan`` with every point logged as it finishes, then the parent's summary.

    The parent ends FINISHED when at least one point produced a result; FAILED (error tags, error re-raised)
    on bad input or when every point failed; KILLED on Ctrl-C, keeping everything logged so far.
    """
    import mlflow

    from mlperf_track.errors import MeasurementError

    configure_tracking(experiment)
    run = mlflow.start_run(run_name=run_name or f"load {plan.target.name}")
    mlflow.set_tags({**hardware_software_tags(), ROLE_TAG: "load", **(extra_tags or {})})
    mlflow.log_params(plan_params(plan))
    listener = _Fanout(MlflowLoadListener(run.info.run_id), extra_listener)
    try:
        outcome = run_load_plan(plan, listener)
        log_sweep_summary(outcome, run.info.run_id)
    except KeyboardInterrupt as interrupt:
        release_unwound_frames(interrupt)  # an interrupted store read must not lock out the writes below
        end_open_runs("KILLED")
        raise
    except BaseException as error:
        fail_parent(error)
        raise
    if not outcome.results:
        all_failed = MeasurementError(f"all {len(outcome.points)} load points failed; see the child runs' error tags")
        fail_parent(all_failed)
        raise all_failed
    end_open_runs("FINISHED")
    return outcome


class _Fanout(LoadListener):
    def __init__(self, *listeners: LoadListener | None) -> None:
        self.listeners = [listener for listener in listeners if listener is not None]

    def point_finished(self, point: LoadPoint) -> None:
        for listener in self.listeners:
            listener.point_finished(point)
