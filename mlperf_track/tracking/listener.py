"""The MLflow adapter of the pipeline: one nested child run per case, logged the moment the case ends.

Run tree::

    parent (the pipeline; the run ``mlflow run`` created, or a new one)
      params   config.* (resolved configuration; ``mlflow run`` already logged the raw -P values)
      metrics  cases/planned, cases/completed, cases/failed, best/<metric> (the best eligible case: finished,
               valid, within the accuracy limit, highest throughput; see mlperf_track.report.eligibility)
      tags     hw.*, sw.*, best.case, best.run_id, best.status (found | none_eligible), baseline.*,
               mlflow.note.content (the recommendation, shown as the run's description in the MLflow UI),
               note.figures/<stem>.png (a figure left out, and why)
      artifacts summary.json (mlflow.log_table, one row appended per case), summary.csv,
               figures/<stem>.png (mlflow.log_figure: latency, throughput and memory against batch size,
               accuracy against latency with its Pareto front), report/report.{md,html,json},
               baseline/ (the baseline as an MLflow PyTorch model)
      └── child per case, named case.name: params, metrics, tags, samples.csv, result.json [, profile/...]
          (FAILED with error.type / error.message when the case failed)

Everything about a case is written in :meth:`on_case_end`, so an interruption loses no finished case. The
figures and reports are built by :func:`mlperf_track.report.build.report_parent_run` from the parent's child
runs in :meth:`on_pipeline_end`, which the pipeline also calls after an interruption: the parent's report
is the same report ``mlperf-track report`` makes, restricted to this pipeline.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from mlperf_track.pipeline.events import CaseOutcome, PipelineListener, PipelineOutcome
from mlperf_track.report.candidates import from_outcome
from mlperf_track.report.eligibility import Candidate, rank
from mlperf_track.tracking import logging as tracking_logging
from mlperf_track.tracking import summary
from mlperf_track.tracking.model_logging import log_baseline_model

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlperf_track.engine.result import BenchmarkResult
    from mlperf_track.models.artifact import ModelArtifact
    from mlperf_track.pipeline.config import PipelineConfig
    from mlperf_track.report.recommend import Recommendation
    from mlperf_track.spec import CaseSpec

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

SUMMARY_TABLE = "summary.json"
SUMMARY_CSV = "summary.csv"
#: MLflow shows this tag as the run's description: the parent carries the recommendation there.
DESCRIPTION_TAG = "mlflow.note.content"
#: Artifact folders of the figures (``mlflow.log_figure``) and of report.md, report.html and report.json.
FIGURE_DIR = "figures"
REPORT_DIR = "report"
#: Configuration shown in the report, as (config param, label).
REPORT_CONFIG = (
    ("model", "model"),
    ("device", "device"),
    ("variants", "variants"),
    ("runtimes", "runtimes"),
    ("precisions", "precisions"),
    ("batch_sizes", "batch sizes"),
    ("image_size", "image size"),
    ("dataset", "dataset"),
    ("max_accuracy_drop", "max accuracy drop"),
)


def config_params(config: PipelineConfig, device: str | None = None) -> dict[str, str]:
    """The resolved configuration as ``config.*`` params (strings)."""
    params = {
        "model": config.model,
        "weights": config.weights or "default",
        "device": device or config.device,
        "variants": ",".join(config.variants) or "none",
        "runtimes": ",".join(config.runtimes),
        "precisions": ",".join(config.precisions),
        "batch_sizes": ",".join(str(size) for size in config.batch_sizes),
        "image_size": str(config.image_size),
        "dataset": config.dataset,
        "epochs": str(config.epochs),
        "num_threads": "default" if config.num_threads is None else str(config.num_threads),
        "channels_last": str(config.channels_last).lower(),
        "seed": str(config.seed),
        "profile": str(config.profile).lower(),
        "max_accuracy_drop": "none" if config.max_accuracy_drop is None else f"{config.max_accuracy_drop:g}",
        "seq_lens": ",".join(map(str, config.seq_lens)),
        "prompt_lens": ",".join(map(str, config.prompt_lens)),
        "output_lens": ",".join(map(str, config.output_lens)),
        "repeats": str(config.repeats),
        "trust_pickle": str(config.trust_pickle).lower(),
    }
    params.update({f"option.{key}": value for key, value in config.options})
    params.update({f"timing.{key}": str(value) for key, value in config.timing.to_dict().items()})
    return {f"config.{key}": value for key, value in params.items()}


class MlflowPipelineListener(PipelineListener):
    """Logs a pipeline into MLflow as it runs.

    The parent run must be the active fluent run when the pipeline starts (``run_tracked_pipeline`` does
    that); child runs are started with ``mlflow.start_run(nested=True)`` and everything on the parent is
    logged by run id, so it lands on the parent even while a child is active.

    Args:
        parent_run_id: The parent run.
        log_model: Log the baseline as an MLflow PyTorch model named ``baseline`` on the parent.
    """

    def __init__(self, parent_run_id: str, *, log_model: bool = True) -> None:
        self.parent_run_id = parent_run_id
        self.log_model = log_model
        self.rows: list[dict[str, Any]] = []
        self.child_runs: dict[str, str] = {}
        self.best: BenchmarkResult | None = None
        #: Every case so far, as the eligibility rule sees it.
        self.candidates: list[Candidate] = []
        self.notes: dict[str, str] = {}
        self._open_case: CaseSpec | None = None
        self._pending_baseline: ModelArtifact | None = None
        self._config: PipelineConfig | None = None
        self._device: str | None = None
        #: Whether the figures and reports reflect every row so far.
        self.summary_logged = False

    @property
    def client(self) -> MlflowClient:
        """A client for the current tracking URI."""
        import mlflow

        return mlflow.MlflowClient()

    # -- events ---------------------------------------------------------------------------------------------

    def on_pipeline_start(self, config: PipelineConfig, cases: list[CaseSpec]) -> None:
        """Log the resolved configuration and the number of planned cases on the parent."""
        from mlflow.entities import Metric, Param

        self._config = config
        self._device = cases[0].device if cases else None
        params = config_params(config, self._device)
        self.client.log_batch(
            self.parent_run_id,
            metrics=[Metric("cases/planned", float(len(cases)), int(time.time() * 1000), 0)],
            params=[Param(key, value) for key, value in params.items()],
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
            self.client.log_batch(self.parent_run_id, tags=_run_tags(tags))
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
            self.client.log_batch(self.parent_run_id, metrics=points[start : start + 1000])
        if self.log_model:
            self._pending_baseline = artifact
            if self._open_case is None:
                self._log_pending_baseline()

    def on_case_start(self, case: CaseSpec) -> None:
        """Start the case's child run (so the UI shows it running) with its params."""
        import mlflow

        if self._open_case is not None:
            self._end_child("FAILED", RuntimeError(f"case {self._open_case.name} ended without an outcome"))
        run = mlflow.start_run(run_name=case.name, nested=True, parent_run_id=self.parent_run_id)
        mlflow.log_params(case.params())
        self.child_runs[case.name] = run.info.run_id
        self._open_case = case

    def on_case_end(self, outcome: CaseOutcome) -> None:
        """Log the case into its child run, end it, and update the parent's table, counters and best case."""
        if self._open_case is None or self._open_case != outcome.case:
            self.on_case_start(outcome.case)
        if outcome.result is not None:
            tracking_logging.log_case_result(outcome.result, outcome.artifacts)
            self._end_child("FINISHED")
        else:
            self._log_partial_files(outcome)
            self._end_child("FAILED", outcome.error or RuntimeError("the case produced no result"))
        self._update_parent(outcome)
        if self._pending_baseline is not None:
            self._log_pending_baseline()

    def on_pipeline_end(self, outcome: PipelineOutcome) -> None:
        """Close a case left open, then log the figures, the CSV summary and the reports on the parent."""
        if self._open_case is not None:
            self.abort("KILLED" if outcome.interrupted else "FAILED")
        self.log_summary_artifacts()

    # -- helpers --------------------------------------------------------------------------------------------

    def abort(self, status: str = "KILLED") -> None:
        """End a child run left open (Ctrl-C, a crash) with ``status``; what it logged is kept."""
        if self._open_case is not None:
            error = KeyboardInterrupt() if status == "KILLED" else RuntimeError("the pipeline stopped")
            self._end_child(status, error)

    def _end_child(self, status: str, error: BaseException | None = None) -> None:
        import mlflow

        case, self._open_case = self._open_case, None
        active = mlflow.active_run()
        if case is None or active is None or active.info.run_id != self.child_runs.get(case.name):
            return
        if error is not None:
            mlflow.set_tags(tracking_logging.error_tags(error))
        mlflow.end_run(status=status)

    def _log_partial_files(self, outcome: CaseOutcome) -> None:
        """Files a failed case still produced (a trace of the failing call) go under ``profile/``."""
        import mlflow

        for path in outcome.artifacts.values():
            if path.is_file():
                mlflow.log_artifact(str(path), artifact_path=tracking_logging.PROFILE_DIR)

    def _update_parent(self, outcome: CaseOutcome) -> None:
        import pandas as pd
        from mlflow.entities import Metric

        run_id = self.child_runs.get(outcome.case.name)
        limits = summary.pipeline_limits(self._config)
        row = summary.summary_row(outcome, run_id, limits)
        candidate = from_outcome(outcome, run_id or "")
        self.candidates.append(candidate)
        self.rows.append(row)
        self.summary_logged = False
        client = self.client
        client.log_table(self.parent_run_id, pd.DataFrame([row]), SUMMARY_TABLE)
        now_ms, step = int(time.time() * 1000), len(self.rows)
        failed = sum(1 for item in self.rows if item["status"] != "ok")
        metrics = [
            Metric("cases/completed", float(len(self.rows) - failed), now_ms, step),
            Metric("cases/failed", float(failed), now_ms, step),
        ]
        result = outcome.result
        if result is not None and rank(self.candidates, limits).best is candidate:
            self.best = result
            metrics += [Metric(key, value, now_ms, step) for key, value in summary.best_metrics(result).items()]
            best_tags = {"best.case": result.case.name, "best.run_id": row["run_id"]}
            client.log_batch(self.parent_run_id, tags=_run_tags(best_tags))
        client.log_batch(self.parent_run_id, metrics=metrics)

    def _log_pending_baseline(self) -> None:
        artifact, self._pending_baseline = self._pending_baseline, None
        if artifact is None:
            return
        note = log_baseline_model(artifact, self.parent_run_id)
        if note:
            self.notes["baseline model"] = note
            self.client.set_tag(self.parent_run_id, "note.baseline_model", note)

    def log_summary_artifacts(self) -> None:
        """``summary.csv``, the figures and the reports on the parent, from what is logged so far.

        The report is :mod:`mlperf_track.report`'s, built from the parent's child runs. Never raises: a step
        that fails is logged as a warning, and the measured cases (child runs, ``summary.json``) stay.
        """
        from mlperf_track.report.build import render_report, report_parent_run

        self.summary_logged = True
        client, run_id = self.client, self.parent_run_id
        if self.rows:
            csv = summary.summary_frame(self.rows).to_csv(index=False)
            _attempt(SUMMARY_CSV, lambda: client.log_text(run_id, csv, SUMMARY_CSV))
        answer = self.recommendation()
        status = summary.BEST_FOUND if answer.best is not None else summary.BEST_NONE
        tags = {summary.BEST_STATUS_TAG: status, DESCRIPTION_TAG: answer.text}
        _attempt("the recommendation", lambda: client.log_batch(run_id, tags=_run_tags(tags)))
        limits = summary.pipeline_limits(self._config)
        report = _attempt(
            "the report",
            lambda: report_parent_run(run_id, title=self._title(), facts=self._facts(), limits=limits),
        )
        if report is None:
            return
        for name, text in render_report(report, figure_dir=f"../{FIGURE_DIR}").items():
            _attempt(f"{REPORT_DIR}/{name}", partial(client.log_text, run_id, text, f"{REPORT_DIR}/{name}"))
        # bbox_inches="tight" keeps the legend, which sits outside the axes, in the image.
        save = {"bbox_inches": "tight"}
        for stem, figure in report.figures.items():
            artifact_file = f"{FIGURE_DIR}/{stem}.png"
            _attempt(artifact_file, partial(client.log_figure, run_id, figure, artifact_file, save_kwargs=save))
        if report.missing_figures:
            notes = {f"note.{FIGURE_DIR}/{stem}.png": why for stem, why in report.missing_figures.items()}
            _attempt("the figure notes", lambda: client.log_batch(run_id, tags=_run_tags(notes)))

    def recommendation(self) -> Recommendation:
        """The answer over every case so far: what to ship under the run's limits, and the runner-up."""
        from mlperf_track.report.recommend import recommend

        return recommend(self.candidates, summary.pipeline_limits(self._config), heading=self._question())

    def _question(self) -> str:
        if self._config is None:
            return ""
        from mlperf_track.report.recommend import question_heading

        config = self._config
        return question_heading(config.model, config.image_size, config.dataset, self._device or config.device)

    def _facts(self) -> list[str]:
        """Lines under the report's heading: the configuration and the notes of the run."""
        facts = []
        if self._config is not None:
            params = config_params(self._config, self._device)
            facts.append(
                "configuration: " + ", ".join(f"{label} {params[f'config.{key}']}" for key, label in REPORT_CONFIG)
            )
        facts += [f"{key}: {value}" for key, value in self.notes.items()]
        return facts

    def _title(self) -> str:
        if self._config is None:
            return "mlperf_track benchmark"
        return f"mlperf_track: {self._config.model} on {self._device or self._config.device}"


def _attempt(what: str, step: Callable[[], _T]) -> _T | None:
    """``step()``, or ``None`` with a warning when it fails: figures and reports must not hide the cases."""
    try:
        return step()
    except Exception as error:
        logger.warning("could not log %s on the parent run: %s", what, error, exc_info=True)
        return None


def _run_tags(tags: dict[str, str]) -> list[Any]:
    from mlflow.entities import RunTag

    return [RunTag(key, tracking_logging.clip(str(value))) for key, value in tags.items()]
