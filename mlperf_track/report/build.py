"""Build an experiment's report (Markdown, HTML, JSON and PNG figures) and log it to MLflow."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlperf_track.report import plots, tables
from mlperf_track.report.render import ReportContent, render_html, render_markdown
from mlperf_track.report.runs import client, load_runs, log_files

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

#: Artifact folder of the report on the run it is logged to.
REPORT_ARTIFACT_DIR = "report"


@dataclass
class Report:
    """A built report: what it shows, and the tidy case rows it was built from.

    Attributes:
        content: What the report shows (figures as PNG bytes).
        cases: The case runs, with labels and Pareto flags.
        figures: The seaborn figures by file stem, for callers that log them with ``mlflow.log_figure``.
        missing_figures: Why a figure is left out, by file stem (the same reasons are in ``content.notes``).
    """

    content: ReportContent
    cases: pd.DataFrame
    figures: dict[str, Figure] = field(default_factory=dict)
    missing_figures: dict[str, str] = field(default_factory=dict)


def _figures(cases: pd.DataFrame) -> tuple[dict[str, Figure], dict[str, str]]:
    """Every figure the runs allow, and why each other one is left out, by file stem."""
    figures: dict[str, Figure] = {}
    missing: dict[str, str] = {}
    for stem, (column, label) in plots.BATCH_FIGURES.items():
        figure = plots.batch_scaling_figure(cases, column, label)
        if figure is None:
            missing[stem] = f"No {stem.replace('_', ' ')} figure: no run has {column}."
        else:
            figures[stem] = figure
    trade_off = plots.accuracy_tradeoff_figure(cases)
    if trade_off is None:
        missing["accuracy_vs_latency"] = (
            "No accuracy figure: no run has accuracy/top1 (runs on a synthetic dataset measure speed only)."
        )
    else:
        figures["accuracy_vs_latency"] = trade_off
    hardware = plots.hardware_figure(cases)
    if hardware is not None:
        figures["hardware_comparison"] = hardware
    return figures, missing


def build_report(
    runs: pd.DataFrame, *, title: str, source: str = "", generated_by: str = "mlperf-track report"
) -> Report:
    """Build a report from tidy runs (:func:`mlperf_track.report.runs.runs_frame`).

    Args:
        runs: Every run of the experiment; runs without a latency metric (parents, reports) are skipped.
        title: Heading.
        source: Where the runs came from (shown under the heading).
        generated_by: What made the report (shown under the heading).
    """
    cases = tables.case_runs(runs)
    if not cases.empty:
        cases = tables.add_pareto_columns(cases)
    failed = tables.failed_runs(runs)
    facts = [source] if source else []
    facts.append(f"{len(cases)} measured case run(s), {len(failed)} failed run(s)")
    if not cases.empty:
        facts.append("hardware: " + "; ".join(sorted(cases["hardware"].unique())))
    facts.append(f"generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by {generated_by}")
    if cases.empty:
        figures: dict[str, Figure] = {}
        why = "No run in this experiment measured a case."
        missing = dict.fromkeys((*plots.BATCH_FIGURES, "accuracy_vs_latency"), why)
        notes = [why]
    else:
        figures, missing = _figures(cases)
        notes = list(missing.values())
    content = ReportContent(
        title=title,
        facts=facts,
        best=tables.best_cases(cases) if not cases.empty else {},
        summary=tables.summary_table(cases) if not cases.empty else cases.iloc[:0],
        failed=failed,
        figures={stem: plots.figure_png(figure) for stem, figure in figures.items()},
        notes=notes,
    )
    return Report(content, cases, figures, missing)


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


def render_report(report: Report, *, figure_dir: str = "figures") -> dict[str, str]:
    """``report.md``, ``report.html`` and ``report.json`` as text, by file name.

    Args:
        report: The built report.
        figure_dir: Where the Markdown links the figures, relative to ``report.md`` (the HTML embeds them).
    """
    return {
        "report.md": render_markdown(report.content, figure_dir=figure_dir),
        "report.html": render_html(report.content),
        "report.json": json.dumps(report_json(report), indent=2, default=str),
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
    for name, text in render_report(report).items():
        files[name] = output_dir / name
        files[name].write_text(text, encoding="utf-8")
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


def report_parent_run(
    parent_run_id: str, *, tracking_uri: str | None = None, title: str | None = None, facts: Sequence[str] = ()
) -> Report:
    """Build the report of one pipeline from the child runs of its parent run (nothing is written or logged).

    Args:
        parent_run_id: The parent run; its child runs are the cases.
        tracking_uri: Tracking URI, or ``None`` for MLflow's current one.
        title: Heading; ``None`` names the parent run.
        facts: More lines under the heading (the configuration, say), shown after where the runs came from.
    """
    mlflow_client = client(tracking_uri)
    parent = mlflow_client.get_run(parent_run_id)
    experiment = mlflow_client.get_experiment(parent.info.experiment_id).name
    runs = load_runs(experiment, tracking_uri=tracking_uri, parent_run_id=parent_run_id)
    name = parent.info.run_name or parent_run_id[:8]
    report = build_report(
        runs,
        title=title or f"mlperf_track report: {name}",
        source=f"child runs of run {name!r} ({parent_run_id[:8]}) in experiment {experiment!r}",
        generated_by="mlperf_track from the parent run",
    )
    lines = list(facts)
    best = report.content.best.get("highest throughput")
    if best is not None:
        names = report.cases.loc[report.cases["run_id"] == best["run_id"], "run_name"]
        lines.append(f"best case (highest throughput): {names.iloc[0] if len(names) else best['run_id']}")
    report.content.facts[1:1] = lines
    return report
