"""The MLflow adapter of the pipeline: one nested child run per case, logged the moment the case ends.

Run tree::

    parent (the pipeline; the run ``mlflow run`` created, or a new one)
      params   config.* (resolved configuration; ``mlflow run`` already logged the raw -P values)
      metrics  cases/planned, cases/completed, cases/failed, best/<metric> (the best eligible case: finished,
               valid, within the accuracy limit, highest throughput; see mlperf_track.engine.eligibility),
               cases/resumed (taken over from the run this one resumes), cases/logged_late (via the outbox)
      tags     hw.*, sw.*, best.case, best.run_id, best.status (found | none_eligible), baseline.*,
               mlperf_track.{host,boot_id,pid,pid_start,heartbeat,heartbeat_interval_s} (the owning process),
               mlperf_track.config_fingerprint, mlperf_track.resumed_from / resumed_cases / resumed_by,
               mlflow.note.content (the recommendation, shown as the run's description in the MLflow UI),
               note.figures/<stem>.png (a figure left out, and why)
      artifacts summary.json (mlflow.log_table, one row appended per case), summary.csv,
               figures/<stem>.png (mlflow.log_figure: latency, throughput and memory against batch size,
               accuracy against latency with its Pareto front), report/report.{md,html,json},
               baseline/ (the baseline as an MLflow PyTorch model)
      └── child per case, named case.name: params, metrics, tags, samples.csv, result.json [, profile/...]
          (FAILED with error.type / error.message when the case failed; a case taken over from a resumed
          run keeps its run, moved under this parent, with mlperf_track.measured_under = its first parent)

Child runs are created and ended through ``MlflowClient`` by run id (never the fluent stack), so a failure to
reach the tracking store can be handled at every step: when the store is unreachable, the case goes to the
outbox (:mod:`mlperf_track.tracking.outbox`), later cases follow it there in order, and the waiting cases are
logged as soon as the store answers again (retried with backoff while cases run, and for a bounded time at the
end). Everything about a case is written in :meth:`on_case_end`, so an interruption loses no finished case. The
figures and reports are built by :func:`mlperf_track.report.build.report_parent_run` from the parent's child
runs in :meth:`on_pipeline_end`, which the pipeline also calls after an interruption: the parent's report
is the same report ``mlperf-track report`` makes, restricted to this pipeline.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from functools import partial
from typing import TYPE_CHECKING, Any

from mlperf_track import metrics as m
from mlperf_track.errors import describe_error
from mlperf_track.pipeline.events import CaseKey, CaseOutcome, PipelineListener, PipelineOutcome, case_key
from mlperf_track.tracking import logging as tracking_logging
from mlperf_track.tracking.model_logging import log_baseline_model
from mlperf_track.tracking.outbox import Entry, Outbox, is_unreachable, log_entry
from mlperf_track.tracking.parent_report import (  # re-exported: the names other modules know
    DESCRIPTION_TAG,
    FIGURE_DIR,
    REPORT_CONFIG,
    REPORT_DIR,
    SUMMARY_CSV,
    SUMMARY_TABLE,
    ParentSummary,
    config_params,
    run_tags,
)
from mlperf_track.tracking.stale import identity_tags

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from mlperf_track.models.artifact import ModelArtifact
    from mlperf_track.pipeline.config import PipelineConfig
    from mlperf_track.spec import CaseSpec

logger = logging.getLogger(__name__)

__all__ = [
    "DESCRIPTION_TAG",
    "FIGURE_DIR",
    "REPORT_CONFIG",
    "REPORT_DIR",
    "SUMMARY_CSV",
    "SUMMARY_TABLE",
    "MlflowPipelineListener",
    "config_params",
]

#: Seconds the end of a pipeline waits for the tracking store to log what waits in the outbox.
FINAL_WAIT_S = 60.0
FINAL_WAIT_ENV = "MLPERF_TRACK_OUTBOX_WAIT_S"


def final_wait_s() -> float:
    """``$MLPERF_TRACK_OUTBOX_WAIT_S`` when it is a number >= 0, else :data:`FINAL_WAIT_S`."""
    try:
        value = float(os.environ.get(FINAL_WAIT_ENV, ""))
    except ValueError:
        return FINAL_WAIT_S
    return value if value >= 0 else FINAL_WAIT_S


class MlflowPipelineListener(ParentSummary, PipelineListener):
    """Logs a pipeline into MLflow as it runs.

    Everything is logged by run id: the parent (the active fluent run, or any run), and each case's child run,
    created through the client with ``mlflow.parentRunId`` and the run context tags ``mlflow.start_run`` would add.

    Args:
        parent_run_id: The parent run.
        log_model: Log the baseline as an MLflow PyTorch model named ``baseline`` on the parent.
        outbox: Where cases wait when the tracking store is unreachable; ``None``: errors propagate.
        adopted: Child runs taken over from a resumed run, by case key (:meth:`on_case_resumed` rows).
    """

    def __init__(
        self,
        parent_run_id: str,
        *,
        log_model: bool = True,
        outbox: Outbox | None = None,
        adopted: Mapping[CaseKey, str] | None = None,
    ) -> None:
        super().__init__(parent_run_id)
        self.log_model = log_model
        self.outbox = outbox
        self.adopted = dict(adopted or {})
        self.child_runs: dict[str, str] = {}
        self._open_case: CaseSpec | None = None
        self._open_run: str | None = None
        self._pending_baseline: ModelArtifact | None = None
        self._experiment_id: str | None = outbox.experiment_id if outbox is not None else None
        #: Cases that waited in the outbox and have been logged since (metric ``cases/logged_late``).
        self.logged_late = 0

    # -- events ---------------------------------------------------------------------------------------------

    def on_pipeline_start(self, config: PipelineConfig, cases: list[CaseSpec]) -> None:
        """Log the resolved configuration and the number of planned cases on the parent."""
        from mlflow.entities import Metric, Param

        self._config = config
        self._device = cases[0].device if cases else None
        params = config_params(config, self._device)
        self._parent_step(
            "the configuration",
            lambda: self.client.log_batch(
                self.parent_run_id,
                metrics=[Metric("cases/planned", float(len(cases)), int(time.time() * 1000), 0)],
                params=[Param(key, value) for key, value in params.items()],
            ),
        )

    def on_baseline_ready(self, artifact: ModelArtifact, facts: dict[str, str]) -> None:
        """Tag the baseline facts on the parent, log its training curve, then the model (after any open case).

        The curve (``baseline.curve``: JSON ``{metric key: [[epoch, value], ...]}``) becomes metrics with
        ``step`` = epoch (``baseline/train_loss``, ``baseline/holdout_top1``, ``baseline/holdout_loss``), so
        the MLflow UI draws it; every other fact becomes a ``baseline.*`` tag.
        """
        import json

        from mlflow.entities import Metric

        from mlperf_track import metrics as metric_keys

        tags = {key if key.startswith("baseline.") else f"baseline.{key}": value for key, value in facts.items()}
        curve_text = tags.pop(metric_keys.BASELINE_CURVE_FACT, None)
        if tags:
            batch = run_tags(tags)
            self._parent_step("the baseline facts", lambda: self.client.log_batch(self.parent_run_id, tags=batch))
        try:
            curve = json.loads(curve_text) if curve_text else {}
            now_ms = int(time.time() * 1000)
            points = [
                Metric(key, float(value), now_ms, int(step)) for key, pairs in curve.items() for step, value in pairs
            ]
        except (ValueError, TypeError, AttributeError) as error:
            logger.warning("the baseline's training curve is unreadable, so it is not logged: %s", error)
            points = []
        for start in range(0, len(points), 1000):  # log_batch takes at most 1000 metrics per call
            step = partial(self.client.log_batch, self.parent_run_id, metrics=points[start : start + 1000])
            self._parent_step("the baseline curve", step)
        if self.log_model:
            self._pending_baseline = artifact
            if self._open_case is None:
                self._log_pending_baseline()

    def on_case_resumed(self, outcome: CaseOutcome) -> None:
        """A case the resumed run measured: its (moved) child run gets a row on this parent."""
        run_id = self.adopted.get(case_key(outcome.case))
        if run_id is not None:
            self.child_runs[outcome.case.name] = run_id
        index = self.remember(outcome, run_id)
        self._parent_step(f"the row of {outcome.case.name}", lambda: self.publish_row(index, outcome.result))

    def on_case_start(self, case: CaseSpec) -> None:
        """Start the case's child run (so the UI shows it running) with its params.

        While cases wait in the outbox the run is created when the case is logged, in order.
        """
        if self._open_case is not None:
            self._end_child("FAILED", RuntimeError(f"case {self._open_case.name} ended without an outcome"))
        self._open_case, self._open_run = case, None
        if self._waiting():
            return
        try:
            self._open_run = self._create_child(case)
        except Exception as error:
            self._offline_or_raise(error)

    def on_case_end(self, outcome: CaseOutcome) -> None:
        """Log the case into its child run, end it, and update the parent's table, counters and best case.

        When the tracking store is unreachable (or cases already wait), the case goes to the outbox instead.
        """
        if self._open_case is None or self._open_case != outcome.case:
            self.on_case_start(outcome.case)
        run_id, self._open_case, self._open_run = self._open_run, None, None
        index = self.remember(outcome, run_id)
        self.retry_outbox()
        if self._waiting():
            self._spool(outcome, run_id, index, child_logged=False)
            return
        try:
            run_id = self._log_child(outcome, run_id)
        except Exception as error:
            self._offline_or_raise(error)
            self._spool(outcome, run_id, index, child_logged=False)
            return
        self.set_run_id(index, run_id)
        try:
            self.publish_row(index, outcome.result)
        except Exception as error:
            self._offline_or_raise(error)
            self._spool(outcome, run_id, index, child_logged=True)
            return
        if self._pending_baseline is not None:
            self._log_pending_baseline()

    def on_pipeline_end(self, outcome: PipelineOutcome) -> None:
        """Close a case left open, log what waits in the outbox (waiting a bounded time for the store), then the
        figures, the CSV summary and the reports on the parent (skipped while cases still wait)."""
        if self._open_case is not None:
            self.abort("KILLED" if outcome.interrupted else "FAILED")
        if self.outbox is not None and self.outbox.pending:
            self.wait_for_outbox(0.0 if outcome.interrupted else final_wait_s())  # Ctrl-C: one try, no waiting
        if self.outbox is not None and self.outbox.pending:
            logger.warning("the tracking store is still unreachable: the report is made when the outbox is synced")
            return
        self.log_summary_artifacts()

    # -- child runs -----------------------------------------------------------------------------------------

    def abort(self, status: str = "KILLED") -> None:
        """End every child run left open (Ctrl-C, a crash) with ``status``; what it logged is kept.

        Besides the open case's run, the store is asked for this parent's children still RUNNING: an
        interruption can land after ``create_run`` and before its id is kept, or while a finished case is
        being logged into its run, and such a run must not stay RUNNING.
        """
        error = KeyboardInterrupt() if status == "KILLED" else RuntimeError("the pipeline stopped")
        if self._open_case is not None:
            self._end_child(status, error)
        for run_id in self._running_children():
            self._end_run(run_id, status, error)

    def _running_children(self) -> list[str]:
        """The ids of this parent's child runs the store shows RUNNING (none when it cannot be asked)."""
        query = f"tags.`mlflow.parentRunId` = '{self.parent_run_id}' and attributes.status = 'RUNNING'"
        try:
            runs = self.client.search_runs([self._experiment()], query, max_results=1000)
        except Exception as failure:  # the stale-run cleanup closes them later
            logger.warning("could not look for child runs left RUNNING: %s", failure)
            return []
        return [run.info.run_id for run in runs]

    def _end_child(self, status: str, error: BaseException | None = None) -> None:
        run_id, self._open_case, self._open_run = self._open_run, None, None
        if run_id is not None:
            self._end_run(run_id, status, error)

    def _end_run(self, run_id: str, status: str, error: BaseException | None) -> None:
        try:
            if error is not None:
                self.client.log_batch(run_id, tags=run_tags(tracking_logging.error_tags(error)))
            self.client.set_terminated(run_id, status)
        except Exception as failure:  # the stale-run cleanup closes it later; the pipeline's own end matters more
            logger.warning("could not end the child run %s as %s: %s", run_id, status, failure)

    def _experiment(self) -> str:
        if self._experiment_id is None:
            self._experiment_id = self.client.get_run(self.parent_run_id).info.experiment_id
        return self._experiment_id

    def _create_child(self, case: CaseSpec) -> str:
        """A RUNNING child run of the parent for ``case``, with its params and the run context tags."""
        from mlflow.entities import Param
        from mlflow.tracking.context.registry import resolve_tags

        tags = resolve_tags({"mlflow.parentRunId": self.parent_run_id, **identity_tags()})
        run = self.client.create_run(self._experiment(), run_name=case.name, tags=tags)
        run_id: str = run.info.run_id
        self.child_runs[case.name] = run_id
        self.client.log_batch(run_id, params=[Param(key, value) for key, value in case.params().items()])
        return run_id

    def _log_child(self, outcome: CaseOutcome, run_id: str | None) -> str:
        """Log ``outcome`` into its child run (created now when needed) and end it; returns the run id."""
        run_id = run_id or self._create_child(outcome.case)
        if outcome.result is not None:
            tracking_logging.log_case_result(outcome.result, outcome.artifacts, run_id=run_id, client=self.client)
            status = "FINISHED"
        else:
            error = outcome.error or RuntimeError("the case produced no result")
            tracking_logging.log_failed_case(outcome.case, error, outcome.artifacts, run_id=run_id, client=self.client)
            status = "FAILED"
        self.client.set_terminated(run_id, status)
        return run_id

    # -- the outbox -----------------------------------------------------------------------------------------

    def _waiting(self) -> bool:
        """Whether cases wait in the outbox (later cases follow them there, in order)."""
        return self.outbox is not None and self.outbox.pending

    def _offline_or_raise(self, error: BaseException) -> None:
        """Note that the store is unreachable (and when to try again); re-raise any other error."""
        if self.outbox is None or not is_unreachable(error):
            raise error
        wait = self.outbox.backoff.failed()
        logger.warning("the tracking store is unreachable (%s); next try in %.0f s", describe_error(error), wait)

    def _spool(self, outcome: CaseOutcome, run_id: str | None, index: int, *, child_logged: bool) -> None:
        assert self.outbox is not None
        limits = {"max_accuracy_drop": None if self._config is None else self._config.max_accuracy_drop}
        entry = self.outbox.put(outcome, run_id, limits)
        entry.data.update(row_index=index, child_logged=child_logged)
        entry.save()

    def retry_outbox(self, *, force: bool = False) -> bool:
        """Log the waiting cases, oldest first, when a retry is due (or ``force``); returns whether none is left."""
        outbox = self.outbox
        if outbox is None or not outbox.pending:
            return True
        if not force and not outbox.backoff.due():
            return False
        logged = 0
        for entry in outbox.entries():
            try:
                self._log_entry(entry)
            except Exception as error:
                self._offline_or_raise(error)
                return False
            logged += 1
        outbox.backoff.succeeded()
        logger.info("the tracking store is back: logged %d waiting case(s)", logged)
        self._parent_step("the late-case count", self._log_late_count)
        return True

    def _log_entry(self, entry: Entry) -> None:
        """Log one waiting case (its child run, then its row on the parent) and delete it from the outbox."""
        run_id = entry.data["run_id"] if entry.data.get("child_logged") else log_entry(entry, self.client)
        index = entry.data.get("row_index")
        if isinstance(index, int) and 0 <= index < len(self.rows):
            self.set_run_id(index, run_id)
            self.publish_row(index, entry.result())
        shutil.rmtree(entry.folder, ignore_errors=True)
        self.logged_late += 1

    def _log_late_count(self) -> None:
        self.client.log_metric(self.parent_run_id, m.CASES_LOGGED_LATE, float(self.logged_late))

    def wait_for_outbox(self, budget_s: float) -> bool:
        """Retry the outbox until it is empty or ``budget_s`` seconds have passed; returns whether it is empty."""
        deadline = time.monotonic() + budget_s
        while self.outbox is not None and self.outbox.pending:
            if self.outbox.backoff.due() and self.retry_outbox():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(left, max(0.1, self.outbox.backoff.wait_s())))
        return True

    # -- the parent -----------------------------------------------------------------------------------------

    def _parent_step(self, what: str, step: Callable[[], Any]) -> None:
        """Run ``step`` (a write to the parent); an unreachable store only costs a warning."""
        try:
            step()
        except Exception as error:
            if not is_unreachable(error):
                raise
            logger.warning("could not log %s on the parent run (tracking store unreachable)", what)
            if self.outbox is not None:
                self.outbox.backoff.failed()

    def _log_pending_baseline(self) -> None:
        artifact, self._pending_baseline = self._pending_baseline, None
        if artifact is None or self._waiting():
            return
        note = log_baseline_model(artifact, self.parent_run_id)
        if note:
            self.notes["baseline model"] = note
            self._parent_step(
                "the baseline note", lambda: self.client.set_tag(self.parent_run_id, "note.baseline_model", note)
            )
