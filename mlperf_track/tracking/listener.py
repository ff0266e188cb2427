"""The MLflow adapter of the pipeline: one nested child run per case, logged the moment the case ends.

Run tree::

    parent (the pipeline; the run ``mlflow run`` created, or a new one)
      params   config.* (resolved configuration; ``mlflow run`` already logged the raw -P values)
      metrics  cases/planned, cases/completed, cases/failed, best/<metric> (the highest-throughput case)
      tags     hw.*, sw.*, best.case, best.run_id, baseline.*, note.figures/... (a figure left out, and why)
      artifacts summary.json (mlflow.log_table, one row appended per case), summary.csv,
               figures/{latency,throughput,memory}_vs_batch_size.png, report/report.md, report/report.html,
               baseline/ (the baseline as an MLflow PyTorch model)
      └── child per case, named case.name: params, metrics, tags, samples.csv, result.json [, profile/...]
          (FAILED with error.type / error.message when the case failed)

Everything about a case is written in :meth:`on_case_end`, so an interruption loses no finished case; the
figures and reports are rebuilt from the rows in :meth:`on_pipeline_end`, which the pipeline also calls after
an interruption.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from mlperf_track.pipeline.events import CaseOutcome, PipelineListener, PipelineOutcome
from mlperf_track.tracking import logging as tracking_logging
from mlperf_track.tracking import summary
from mlperf_track.tracking.model_logging import log_baseline_model
from mlperf_track.tracking.report import build_html, build_markdown

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlperf_track.engine.result import BenchmarkResult
    from mlperf_track.models.artifact import ModelArtifact
    from mlperf_track.pipeline.config import PipelineConfig
    from mlperf_track.spec import CaseSpec

logger = logging.getLogger(__name__)

SUMMARY_TABLE = "summary.json"
SUMMARY_CSV = "summary.csv"
REPORT_MD = "report/report.md"
REPORT_HTML = "report/report.html"


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
        """Tag the baseline facts on the parent and log the baseline model (after the open case, if any)."""
        if facts:
            self.client.log_batch(self.parent_run_id, tags=_run_tags({f"baseline.{k}": v for k, v in facts.items()}))
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

        row = summary.summary_row(outcome, self.child_runs.get(outcome.case.name))
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
        if result is not None and summary.best_result([r for r in (self.best, result) if r is not None]) is result:
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
        """Figures, ``summary.csv`` and the Markdown/HTML reports from the rows so far (never raises)."""
        client = self.client
        self.summary_logged = True
        try:
            figures, figure_notes = summary.summary_figures(self.rows)
            pngs = {}
            for artifact_file, figure in figures.items():
                client.log_figure(self.parent_run_id, figure, artifact_file)
                pngs[artifact_file] = summary.figure_png(figure)
            notes = {**self.notes, **figure_notes}
            if figure_notes:
                client.log_batch(self.parent_run_id, tags=_run_tags({f"note.{k}": v for k, v in figure_notes.items()}))
            if self.rows:
                client.log_text(self.parent_run_id, summary.summary_frame(self.rows).to_csv(index=False), SUMMARY_CSV)
            best = next((row for row in self.rows if self.best and row["case"] == self.best.case.name), None)
            title = self._title()
            config = {k.removeprefix("config."): v for k, v in self._config_dict().items()}
            markdown = build_markdown(title, config=config, rows=self.rows, best=best, notes=notes)
            client.log_text(self.parent_run_id, markdown, REPORT_MD)
            page = build_html(title, config=config, rows=self.rows, best=best, figures=pngs, notes=notes)
            client.log_text(self.parent_run_id, page, REPORT_HTML)
        except Exception as error:  # figures and reports must not hide the measured cases
            logger.warning("could not log the summary figures and reports: %s", error, exc_info=True)

    def _config_dict(self) -> dict[str, str]:
        if self._config is None:
            return {}
        keys = ("model", "device", "variants", "runtimes", "precisions", "batch_sizes", "image_size", "dataset")
        params = config_params(self._config, self._device)
        return {f"config.{key}": params[f"config.{key}"] for key in keys}

    def _title(self) -> str:
        if self._config is None:
            return "mlperf_track benchmark"
        return f"mlperf_track: {self._config.model} on {self._device or self._config.device}"


def _run_tags(tags: dict[str, str]) -> list[Any]:
    from mlflow.entities import RunTag

    return [RunTag(key, tracking_logging.clip(str(value))) for key, value in tags.items()]
