"""Build an experiment's report (Markdown, HTML, JSON and PNG figures) and log it to MLflow."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlperf_track.report import plots, tables
from mlperf_track.report.render import ReportContent, render_html, render_markdown
from mlperf_track.report.runs import load_runs, log_files

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

#: Artifact folder of the report on the run it is logged to.
REPORT_ARTIFACT_DIR = "report"


@dataclass
class Report:
    """A built report: what it shows, and the tidy case rows it was built from."""

    content: ReportContent
    cases: pd.DataFrame


def _figures(cases: pd.DataFrame) -> tuple[dict[str, bytes], list[str]]:
    """PNG bytes of every figure the runs allow, and a note for every figure they do not."""
    figures: dict[str, bytes] = {}
    notes: list[str] = []
    for stem, (column, label) in plots.BATCH_FIGURES.items():
        figure = plots.batch_scaling_figure(cases, column, label)
        if figure is None:
            notes.append(f"No {stem.replace('_', ' ')} figure: no run has {column}.")
        else:
            figures[stem] = plots.figure_png(figure)
    trade_off = plots.accuracy_tradeoff_figure(cases)
    if trade_off is None:
        notes.append("No accuracy figure: no run has accuracy/top1 (runs on a synthetic dataset measure speed only).")
    else:
        figures["accuracy_vs_latency"] = plots.figure_png(trade_off)
    hardware = plots.hardware_figure(cases)
    if hardware is not None:
        figures["hardware_comparison"] = plots.figure_png(hardware)
    return figures, notes


def build_report(runs: pd.DataFrame, *, title: str, source: str = "") -> Report:
    """Build a report from tidy runs (:func:`mlperf_track.report.runs.runs_frame`).

    Args:
        runs: Every run of the experiment; runs without a latency metric (parents, reports) are skipped.
        title: Heading.
        source: Where the runs came from (shown under the heading).
    """
    cases = tables.case_runs(runs)
    if not cases.empty:
        cases = tables.add_pareto_columns(cases)
    failed = tables.failed_runs(runs)
    facts = [source] if source else []
    facts.append(f"{len(cases)} measured case run(s), {len(failed)} failed run(s)")
    if not cases.empty:
        facts.append("hardware: " + "; ".join(sorted(cases["hardware"].unique())))
    facts.append(f"generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by mlperf-track report")
    figures, notes = _figures(cases) if not cases.empty else ({}, ["No run in this experiment measured a case."])
    content = ReportContent(
        title=title,
        facts=facts,
        best=tables.best_cases(cases) if not cases.empty else {},
        summary=tables.summary_table(cases) if not cases.empty else cases.iloc[:0],
        failed=failed,
        figures=figures,
        notes=notes,
    )
    return Report(content, cases)


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


def report_json(report: Report) -> dict[str, Any]:
    """The report's data: facts, best cases, per-case rows (params, metrics, labels, Pareto flags), failures."""

    def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
        return [{str(key): _json_value(value) for key, value in row.items()} for row in frame.to_dict("records")]

    cases = records(report.cases)
    failed = records(report.content.failed)
    return {
        "title": report.content.title,
        "facts": report.content.facts,
        "best": report.content.best,
        "cases": cases,
        "failed": failed,
        "notes": report.content.notes,
    }


def write_report(report: Report, output_dir: Path) -> dict[str, Path]:
    """Write ``report.md``, ``report.html``, ``report.json`` and ``figures/*.png`` under ``output_dir``.

    Returns:
        The files by their path relative to ``output_dir`` (also their artifact path under ``report/``).
    """
    figure_dir = output_dir / "figures"
    figure_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    for stem, png in report.content.figures.items():
        files[f"figures/{stem}.png"] = figure_dir / f"{stem}.png"
        files[f"figures/{stem}.png"].write_bytes(png)
    files["report.md"] = output_dir / "report.md"
    files["report.md"].write_text(render_markdown(report.content), encoding="utf-8")
    files["report.html"] = output_dir / "report.html"
    files["report.html"].write_text(render_html(report.content), encoding="utf-8")
    files["report.json"] = output_dir / "report.json"
    files["report.json"].write_text(json.dumps(report_json(report), indent=2, default=str), encoding="utf-8")
    return files


def report_experiment(
    experiment: str,
    output_dir: Path,
    *,
    tracking_uri: str | None = None,
    run_id: str | None = None,
    log: bool = True,
    parent_run_id: str | None = None,
) -> tuple[dict[str, Path], str | None]:
    """Load an experiment's runs, write its report, and log the files under ``report/`` of a run.

    Args:
        experiment: Experiment name.
        output_dir: Where the files are written.
        tracking_uri: Tracking URI, or ``None`` for MLflow's current one.
        run_id: The run to log to (a pipeline's parent run); ``None`` starts a run named ``report``.
        log: Log the files to MLflow at all.
        parent_run_id: Report only on the child runs of this parent.

    Returns:
        The files written, and the id of the run they were logged to (``None`` when ``log`` is false).
    """
    runs = load_runs(experiment, tracking_uri=tracking_uri, parent_run_id=parent_run_id)
    report = build_report(runs, title=f"mlperf_track report: {experiment}", source=f"experiment {experiment!r}")
    files = write_report(report, output_dir)
    logger.info("wrote the report of %s to %s", experiment, output_dir)
    logged_to = None
    if log:
        logged_to = log_files(
            files, artifact_dir=REPORT_ARTIFACT_DIR, run_id=run_id, experiment=experiment, tracking_uri=tracking_uri
        )
    return files, logged_to
