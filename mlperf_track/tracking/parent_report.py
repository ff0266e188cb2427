"""What a pipeline's parent run shows about its cases: the summary table, counters, best case, report and figures.

:class:`ParentSummary` holds one row and one eligibility candidate per case (measured here, taken over from a
resumed run, or logged late from the outbox) and logs, by run id, what the parent shows: ``summary.json`` (one
row appended per case), the ``cases/*`` counters, the best case's ``best.*`` tags and ``best/<metric>`` metrics,
and at the end ``summary.csv``, the recommendation, ``report/report.{md,html,json}`` and ``figures/*.png``
(:func:`mlperf_track.report.build.report_parent_run`, built from the parent's child runs). The MLflow listener
(:mod:`mlperf_track.tracking.listener`) and ``mlperf-track sync`` (:mod:`mlperf_track.tracking.sync`) share it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from mlperf_track.engine.eligibility import Candidate
from mlperf_track.engine.ranking import rank
from mlperf_track.pipeline.candidates import from_outcome
from mlperf_track.pipeline.events import CaseOutcome
from mlperf_track.tracking import logging as tracking_logging
from mlperf_track.tracking import summary

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mlperf_track.engine.result import BenchmarkResult
    from mlperf_track.pipeline.config import PipelineConfig
    from mlperf_track.report.recommend import Recommendation

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
        "accuracy": str(config.measure_accuracy).lower(),
        "pin_cores": "none" if config.pin_cores is None else ",".join(map(str, config.pin_cores)),
    }
    params.update({f"option.{key}": value for key, value in config.options})
    params.update({f"timing.{key}": str(value) for key, value in config.timing.to_dict().items()})
    return {f"config.{key}": value for key, value in params.items()}


class ParentSummary:
    """The parent run's view of its cases, logged by run id.

    Args:
        parent_run_id: The parent run.
    """

    def __init__(self, parent_run_id: str) -> None:
        self.parent_run_id = parent_run_id
        self.rows: list[dict[str, Any]] = []
        #: Every case so far, as the eligibility rule sees it (same order as :attr:`rows`).
        self.candidates: list[Candidate] = []
        self.best: BenchmarkResult | None = None
        #: The results so far by case name (the best case's metrics come from here).
        self.results: dict[str, BenchmarkResult] = {}
        self.notes: dict[str, str] = {}
        self._config: PipelineConfig | None = None
        self._device: str | None = None
        #: Whether the figures and reports reflect every row so far.
        self.summary_logged = False

    @property
    def client(self) -> MlflowClient:
        """A client for the current tracking URI."""
        import mlflow

        return mlflow.MlflowClient()

    def remember(self, outcome: CaseOutcome, run_id: str | None) -> int:
        """Add ``outcome``'s row and candidate (nothing is logged); returns its index."""
        if outcome.result is not None:
            self.results[outcome.case.name] = outcome.result
        limits = summary.pipeline_limits(self._config)
        self.rows.append(summary.summary_row(outcome, run_id, limits))
        self.candidates.append(from_outcome(outcome, run_id or ""))
        self.summary_logged = False
        return len(self.rows) - 1

    def set_run_id(self, index: int, run_id: str) -> None:
        """The child run of row ``index`` exists now (it was logged late)."""
        self.rows[index]["run_id"] = run_id
        self.candidates[index] = dataclasses.replace(self.candidates[index], run_id=run_id)

    def publish_row(self, index: int, result: BenchmarkResult | None) -> None:
        """Append row ``index`` to ``summary.json`` and update the counters and the best case."""
        import pandas as pd

        self.client.log_table(self.parent_run_id, pd.DataFrame([self.rows[index]]), SUMMARY_TABLE)
        self.log_totals(best_only_if=self.candidates[index], result=result)

    def log_totals(self, *, best_only_if: Candidate | None = None, result: BenchmarkResult | None = None) -> None:
        """Log the ``cases/*`` counters, and the best case's tags and metrics.

        Args:
            best_only_if: Log the best case only when it is this candidate (with ``result``, its result); ``None``:
                log whichever is best now, from :attr:`results` (filled by :meth:`remember`).
            result: The result of ``best_only_if``.
        """
        from mlflow.entities import Metric

        now_ms, step = int(time.time() * 1000), len(self.rows)
        failed = sum(1 for item in self.rows if item["status"] != "ok")
        metrics = [
            Metric("cases/completed", float(len(self.rows) - failed), now_ms, step),
            Metric("cases/failed", float(failed), now_ms, step),
        ]
        best = rank(self.candidates, summary.pipeline_limits(self._config)).best
        if best_only_if is not None:
            best_result = result if best is best_only_if else None
        else:
            best_result = self.results.get(best.name) if best is not None else None
        if best is not None and best_result is not None:
            self.best = best_result
            metrics += [Metric(key, value, now_ms, step) for key, value in summary.best_metrics(best_result).items()]
            best_tags = {"best.case": best_result.case.name, "best.run_id": best.run_id}
            self.client.log_batch(self.parent_run_id, tags=run_tags(best_tags))
        self.client.log_batch(self.parent_run_id, metrics=metrics)

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
            attempt(SUMMARY_CSV, lambda: client.log_text(run_id, csv, SUMMARY_CSV))
        answer = self.recommendation()
        status = summary.BEST_FOUND if answer.best is not None else summary.BEST_NONE
        tags = {summary.BEST_STATUS_TAG: status, DESCRIPTION_TAG: answer.text}
        attempt("the recommendation", lambda: client.log_batch(run_id, tags=run_tags(tags)))
        limits = summary.pipeline_limits(self._config)
        report = attempt(
            "the report",
            lambda: report_parent_run(run_id, title=self._title(), facts=self._facts(), limits=limits),
        )
        if report is None:
            return
        for name, text in render_report(report, figure_dir=f"../{FIGURE_DIR}").items():
            attempt(f"{REPORT_DIR}/{name}", partial(client.log_text, run_id, text, f"{REPORT_DIR}/{name}"))
        # bbox_inches="tight" keeps the legend, which sits outside the axes, in the image.
        save = {"bbox_inches": "tight"}
        for stem, figure in report.figures.items():
            artifact_file = f"{FIGURE_DIR}/{stem}.png"
            attempt(artifact_file, partial(client.log_figure, run_id, figure, artifact_file, save_kwargs=save))
        if report.missing_figures:
            notes = {f"note.{FIGURE_DIR}/{stem}.png": why for stem, why in report.missing_figures.items()}
            attempt("the figure notes", lambda: client.log_batch(run_id, tags=run_tags(notes)))

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


def attempt(what: str, step: Callable[[], _T]) -> _T | None:
    """``step()``, or ``None`` with a warning when it fails: figures and reports must not hide the cases."""
    try:
        return step()
    except Exception as error:
        logger.warning("could not log %s on the parent run: %s", what, error, exc_info=True)
        return None


def run_tags(tags: dict[str, str]) -> list[Any]:
    """MLflow ``RunTag`` objects, values clipped to MLflow's limit."""
    from mlflow.entities import RunTag

    return [RunTag(key, tracking_logging.clip(str(value))) for key, value in tags.items()]
