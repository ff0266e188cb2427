"""The MLflow adapter of a study: the tune run is the parent, every trial a nested run.

Our own adapter rather than optuna-integration's ``MLflowCallback`` (deprecated, and it skips failed trials):

- parent run: the study's settings as params, the search space as ``search_space.json``; at the end the
  best eligible configuration (:mod:`mlperf_track.tuning.results`: completed, valid, within every limit) as
  ``best.*`` params and ``best/<metric>`` metrics (or the Pareto front as the ``pareto_front.json`` table),
  counts as ``study/*`` metrics, the trials table (``trials.json``, via :func:`mlflow.log_table`, with
  ``eligible``/``why_not``) and figures under ``figures/``; the tag ``tune.result`` says ``found`` or
  ``no_feasible_configuration``; the recommendation in words is the run's description
  (``mlflow.note.content``) and its first line the tag ``tune.recommendation``.
- trial runs: the case's params, metrics, tags and files (:func:`mlperf_track.tracking.logging.log_case_result`),
  constraint values as ``constraint/<name>`` metrics, the tags ``trial.number``, ``trial.state``, ``trial.feasible``,
  ``trial.outcome`` (measured, pruned, reused, failed, out_of_memory, over_budget), ``trial.fidelity`` (short, full,
  none) and ``trial.preparation`` (new, cached) (plus ``trial.variant_built``, the variants the trial built,
  ``trial.duplicate_of``, ``trial.retry_of``, ``trial.stale``), and the costs ``trial/prepare_s``,
  ``trial/variant_build_s``, ``trial/measure_s``, ``trial/wall_s``. A trial pruned after its short measurement ends
  ``FINISHED`` with its short figures under ``short/...`` only (it is not a measurement of the case); one that failed
  or ran out of memory ends ``FAILED`` with ``error.type``/``error.message``. Points reused from earlier runs (warm
  start) are not logged again: their runs exist, and the trials table names them (``reused_from``).
- the parent also gets ``study/wall_s``, ``study/prepare_s``, ``study/measure_s``, ``study/n_reused``,
  ``study/n_short_pruned`` and the tag ``tune.stop_reason``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from optuna.trial import FrozenTrial, TrialState

from mlperf_track import metrics as m
from mlperf_track.interrupts import release_unwound_frames
from mlperf_track.report.recommend import question_heading
from mlperf_track.spec import CaseSpec
from mlperf_track.tuning import costs as c
from mlperf_track.tuning import objective as o
from mlperf_track.tuning.objective import (
    ATTR_DUPLICATE_OF,
    ATTR_ERROR_MESSAGE,
    ATTR_ERROR_TYPE,
    ATTR_METRICS,
    TrialObjective,
    is_feasible,
    point_of,
)
from mlperf_track.tuning.pruning import ATTR_SHORT_BOUND

if TYPE_CHECKING:
    import optuna
    import pandas as pd
    from matplotlib.figure import Figure

    from mlperf_track.tuning.results import StudySummary

logger = logging.getLogger(__name__)

RESULT_TAG = "tune.result"
#: Trial user attributes logged as metrics of the trial run.
COST_METRICS = (
    (c.ATTR_PREPARE_S, m.TRIAL_PREPARE_S),
    (c.ATTR_BUILD_S, m.TRIAL_VARIANT_BUILD_S),
    (c.ATTR_MEASURE_S, m.TRIAL_MEASURE_S),
    (c.ATTR_TRIAL_S, m.TRIAL_WALL_S),
)
#: Short-measurement metrics of a pruned trial, under their own keys.
#: The recommendation's first line; the whole text is the run's description (MLflow's ``mlflow.note.content``).
RECOMMENDATION_TAG = "tune.recommendation"
DESCRIPTION_TAG = "mlflow.note.content"
FOUND = "found"
NOT_FOUND = "no_feasible_configuration"


def _clip(text: str) -> str:
    # tracking.logging imports mlflow at module level: import it only once mlflow is loaded (see tracking/__init__).
    from mlperf_track.tracking.logging import clip

    return clip(text)


def _tag(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


class MlflowTuneTracker:
    """Logs a study into MLflow. Call :meth:`start`, pass :meth:`log_trial` as a study callback, then
    :meth:`finish` (or :meth:`fail`).

    Args:
        objective: The objective (its in-process outcomes carry the full results and files of each trial).
        template: The case template (rebuilds the case of a trial measured by another worker).
    """

    def __init__(self, objective: TrialObjective, template: CaseSpec) -> None:
        self.objective = objective
        self.template = template
        self.run_id: str | None = None
        self.logged_trials: list[int] = []
        self._heartbeat: Any = None
        self.prepare_s = 0.0
        self.measure_s = 0.0

    def start(self, *, run_name: str, params: dict[str, Any], tags: dict[str, str], space: dict[str, Any]) -> str:
        """Start (or, inside ``mlflow run``, continue) the parent run and log the study's settings."""
        import os

        import mlflow

        from mlperf_track.tracking.context import hardware_software_tags
        from mlperf_track.tracking.stale import Heartbeat, close_stale_runs_quietly, liveness_tags

        run = mlflow.start_run(run_name=None if os.environ.get("MLFLOW_RUN_ID") else run_name)
        self.run_id = run.info.run_id
        # Owner and heartbeat, so a killed study's parent is closed as KILLED later (tracking/stale.py).
        mlflow.set_tags(liveness_tags())
        close_stale_runs_quietly(run.info.experiment_id)
        self._heartbeat = Heartbeat(self.run_id, mlflow.get_tracking_uri()).start()
        # Inside ``mlflow run`` the MLproject parameters are already params of this run (``auto``, ``8000``):
        # MLflow refuses to change a param, so only new keys are logged.
        existing = mlflow.get_run(self.run_id).data.params
        mlflow.log_params({key: _tag(value) for key, value in params.items() if key not in existing})
        mlflow.set_tags({**hardware_software_tags(), **tags})
        mlflow.log_dict(space, "search_space.json")
        return self.run_id

    def _case_of(self, trial: FrozenTrial) -> CaseSpec | None:
        point = point_of(self.objective.space, trial)
        return point.to_case(self.template) if point is not None else None

    def log_trial(self, study: optuna.Study, trial: FrozenTrial, *, stale: bool = False) -> None:
        """Log ``trial`` (finished in this process, or failed by a heartbeat) as a nested run."""
        import mlflow

        from mlperf_track.tracking.logging import error_tags, log_case_result

        outcome = self.objective.outcomes.pop(trial.number, None)
        attrs = trial.user_attrs
        tags = {
            "trial.number": str(trial.number),
            "trial.state": trial.state.name,
            "trial.feasible": _tag(is_feasible(trial)),
            "optuna.study_name": study.study_name,
            m.TRIAL_OUTCOME_TAG: str(attrs.get(o.ATTR_OUTCOME, trial.state.name.lower())),
            m.TRIAL_FIDELITY_TAG: str(attrs.get(o.ATTR_FIDELITY, o.NONE)),
        }
        if c.ATTR_PREPARATION in attrs:
            tags[m.TRIAL_PREPARATION_TAG] = str(attrs[c.ATTR_PREPARATION])
        if attrs.get(c.ATTR_BUILT):
            tags[m.TRIAL_VARIANT_BUILT_TAG] = ",".join(map(str, attrs[c.ATTR_BUILT]))
        if o.ATTR_PRUNED_BECAUSE in attrs:
            tags[o.TAG_PRUNED_BECAUSE] = str(attrs[o.ATTR_PRUNED_BECAUSE])[:5000]
        self.prepare_s += float(attrs.get(c.ATTR_PREPARE_S, 0.0))
        self.measure_s += float(attrs.get(c.ATTR_MEASURE_S, 0.0))
        for key, attr in (
            ("trial.duplicate_of", trial.user_attrs.get(ATTR_DUPLICATE_OF)),
            ("trial.retry_of", trial.system_attrs.get("failed_trial")),
        ):
            if attr is not None:
                tags[key] = str(attr)
        if stale:
            tags["trial.stale"] = "true"
        mlflow.start_run(run_name=f"trial-{trial.number}", nested=True, tags=tags)
        try:
            mlflow.log_params({f"optuna.{key}": _tag(value) for key, value in trial.params.items()})
            if outcome is not None and outcome.result is not None:
                log_case_result(outcome.result, outcome.artifacts)
            else:
                case = outcome.case if outcome is not None else self._case_of(trial)
                if case is not None:
                    mlflow.log_params(case.params())
                mlflow.log_metrics(dict(trial.user_attrs.get(ATTR_METRICS, {}) or {}))
            mlflow.log_metrics({key: float(attrs[attr]) for attr, key in COST_METRICS if attr in attrs})
            short = dict(attrs.get(o.ATTR_SHORT_METRICS) or {}) if attrs.get(o.ATTR_FIDELITY) == o.SHORT else {}
            mlflow.log_metrics({key: short[source] for source, key in m.SHORT_KEYS if source in short})
            if short and ATTR_SHORT_BOUND in attrs:
                mlflow.log_metric(m.SHORT_OBJECTIVE_BOUND, float(attrs[ATTR_SHORT_BOUND]))
            mlflow.log_metrics({f"{m.CONSTRAINT_PREFIX}{key}": value for key, value in trial.constraints.items()})
            if trial.values is not None and trial.state == TrialState.COMPLETE:  # a pruned one's is its short value
                mlflow.log_metrics({f"objective/{i}": value for i, value in enumerate(trial.values)})
        except Exception:
            mlflow.end_run(status="FAILED")
            raise
        stopped_by_design = attrs.get(o.ATTR_OUTCOME) in (o.PRUNED, o.OVER_BUDGET)
        if trial.state == TrialState.COMPLETE or (trial.state == TrialState.PRUNED and stopped_by_design):
            mlflow.end_run(status="FINISHED")
        else:
            error: BaseException | None = outcome.error if outcome is not None else None
            if error is None:
                error_type = trial.user_attrs.get(ATTR_ERROR_TYPE, "HeartbeatStale" if stale else "TrialFailed")
                message = trial.user_attrs.get(ATTR_ERROR_MESSAGE, "the worker stopped before the trial finished")
                mlflow.set_tags({"error.type": error_type, "error.message": str(message)[:5000]})
            else:
                mlflow.set_tags(error_tags(error))
            mlflow.end_run(status="FAILED")
        self.logged_trials.append(trial.number)

    def log_stale_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Storage callback: a trial of a dead worker was failed here; log it so the failure is visible."""
        try:
            self.log_trial(study, trial, stale=True)
        except Exception as error:  # a logging problem must not stop the retry of the trial
            logger.warning("could not log stale trial %d: %s", trial.number, error)

    def finish(
        self,
        summary: StudySummary,
        frame: pd.DataFrame,
        figures: dict[str, Figure],
        best_case: Callable[[FrozenTrial], CaseSpec | None],
        *,
        wall_s: float | None = None,
        stop: str = "n_trials",
    ) -> None:
        """Log the answer, the table and the figures on the parent run, and end it."""
        import mlflow
        from matplotlib import pyplot as plt

        counts = summary.counts
        mlflow.log_metrics(
            {
                "study/n_trials": summary.n_trials,
                "study/n_complete": counts.get("COMPLETE", 0),
                "study/n_pruned": counts.get("PRUNED", 0),
                "study/n_failed": counts.get("FAIL", 0),
                "study/n_feasible": summary.n_feasible,
                "study/n_infeasible": summary.n_infeasible,
                "study/n_measured": summary.n_measured,
                m.STUDY_N_REUSED: summary.n_reused,
                m.STUDY_N_SHORT_PRUNED: summary.n_pruned,
                m.STUDY_PREPARE_S: self.prepare_s,
                m.STUDY_MEASURE_S: self.measure_s,
                **({m.STUDY_WALL_S: wall_s} if wall_s is not None else {}),
            }
        )
        mlflow.set_tag(m.STOP_REASON_TAG, stop)
        mlflow.set_tag(RESULT_TAG, FOUND if summary.found else NOT_FOUND)
        template = self.template
        heading = question_heading(template.model, template.image_size, template.dataset, template.device)
        answer = summary.recommendation(heading)
        mlflow.set_tags({DESCRIPTION_TAG: _clip(answer.text), RECOMMENDATION_TAG: _clip(answer.lines[0])})
        if summary.found and not summary.multi_objective:
            self._log_best(summary.best[0], best_case(summary.best[0]))
        elif summary.found:
            mlflow.log_param("best.pareto_trials", ",".join(str(trial.number) for trial in summary.best))
            mlflow.log_metric("study/pareto_size", len(summary.best))
            pareto = frame[frame["number"].isin([trial.number for trial in summary.best])]
            mlflow.log_table(_jsonable(pareto), artifact_file="pareto_front.json")
        if not frame.empty:
            mlflow.log_table(_jsonable(frame), artifact_file="trials.json")
        for name, figure in figures.items():
            mlflow.log_figure(figure, f"figures/{name}")
            plt.close(figure)
        self._stop_heartbeat()
        mlflow.end_run(status="FINISHED")

    def _stop_heartbeat(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None

    @staticmethod
    def _log_best(trial: FrozenTrial, case: CaseSpec | None) -> None:
        import mlflow

        params = {"best.trial_number": str(trial.number), "best.config": str(trial.params.get("config"))}
        if case is not None:
            params.update({f"best.{key}": value for key, value in case.params().items()})
        mlflow.log_params(params)
        metrics = dict(trial.user_attrs.get(ATTR_METRICS, {}) or {})
        mlflow.log_metrics({f"best/{key}": value for key, value in metrics.items()})

    def fail(self, error: BaseException, status: str = "FAILED") -> None:
        """End the parent run after an error (``KILLED`` for an interruption)."""
        import mlflow

        from mlperf_track.tracking.logging import mark_run_failed

        release_unwound_frames(error)  # an error that landed inside a store read must not lock out the writes below
        self._stop_heartbeat()
        while (run := mlflow.active_run()) is not None and run.info.run_id != self.run_id:
            mlflow.end_run(status=status)  # a trial run interrupted while it was being logged
        if mlflow.active_run() is None:
            return
        if status == "FAILED":
            mark_run_failed(error)
        else:
            mlflow.end_run(status=status)


def _jsonable(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns as strings or None so that ``mlflow.log_table`` writes valid JSON."""
    result = frame.copy()
    for column in result.columns:
        if result[column].dtype == object:
            result[column] = [None if value is None else str(value) for value in result[column]]
    return result
