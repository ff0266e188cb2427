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

from mlperf_track import metrics as m
from mlperf_track.engine.eligibility import Limits
from mlperf_track.report import plots, sections, tables, text_plots
from mlperf_track.report.render import ReportContent, SectionContent, render_html, render_markdown
from mlperf_track.report.runs import client, load_runs, log_files, resolve_experiments

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure
    from mlflow import MlflowClient

    from mlperf_track.engine.eligibility import Candidate
    from mlperf_track.report.sections import QuestionResult

logger = logging.getLogger(__name__)

#: Artifact folder of the report on the run it is logged to.
REPORT_ARTIFACT_DIR = "report"
#: How the facts name the kinds of run that are not ranked.
_OTHER_KINDS = {
    tables.TUNE: "tune run(s) (each holds its own answer)",
    tables.TRIAL: "tuning trial(s) (ranked by their tune run, not here)",
    tables.EVALUATOR: "evaluator run(s) (mlflow.models.evaluate: no variant or runtime to rank)",
    tables.REPORT: "report run(s)",
    tables.LOAD: "load test run(s) (latency under load: see their sweep's figures)",
    tables.OTHER: "other run(s)",
}


@dataclass
class Report:
    """A built report: what it shows, and the tidy case rows it was built from.

    Attributes:
        content: What the report shows (figures as PNG bytes).
        cases: Every pipeline case run (``measured`` or not) with labels, Pareto flags and the eligibility
            columns (``eligible``, ``exclusion``, ``why_not``, ``verdict``).
        questions: One answer per question (model, image size, dataset).
        figures: The seaborn figures by file stem, for callers that log them with ``mlflow.log_figure``.
        missing_figures: Why a figure is left out, by file stem (the same reasons are in the section notes).
    """

    content: ReportContent
    cases: pd.DataFrame
    questions: list[QuestionResult] = field(default_factory=list)
    figures: dict[str, Figure] = field(default_factory=dict)
    missing_figures: dict[str, str] = field(default_factory=dict)

    @property
    def measured(self) -> pd.DataFrame:
        """The case runs that measured something."""
        if self.cases.empty:
            return self.cases
        return self.cases[self.cases["measured"].astype(bool)].reset_index(drop=True)


def _accuracy_floor(question: QuestionResult) -> dict[str, float]:
    """Per machine, the lowest top-1 the accuracy limit allows (fp32 baseline top-1 minus the limit)."""
    limit, cases = question.limits.max_accuracy_drop, question.cases
    if limit is None or m.ACCURACY_TOP1 not in cases:
        return {}
    reference = cases[(cases["variant"] == "baseline") & (cases["precision"] == "fp32")]
    medians = reference.groupby("hardware")[m.ACCURACY_TOP1].median().dropna()
    return {str(machine): float(top1) - limit for machine, top1 in medians.items()}


def _figures(question: QuestionResult, prefix: str) -> tuple[dict[str, Figure], dict[str, str]]:
    """Every figure the question's runs allow, and why each other one is left out, by file stem."""
    cases = question.cases[question.cases["measured"].astype(bool)]
    figures: dict[str, Figure] = {}
    missing: dict[str, str] = {}
    if cases.empty:
        why = "No figure: no case of this question was measured (every one failed or was killed)."
        return figures, {prefix + stem: why for stem in (*plots.BATCH_FIGURES, "accuracy_vs_latency")}
    for stem, (column, _) in plots.BATCH_FIGURES.items():
        figure = plots.batch_scaling_figure(cases, column, plots.BATCH_FIGURES[stem][1])
        if figure is None:
            missing[prefix + stem] = f"No {stem.replace('_', ' ')} figure: no run has {column}."
        else:
            figures[prefix + stem] = figure
    recommended = [answer.best.run_id for answer in question.recommendations.values() if answer.best is not None]
    trade_off = plots.accuracy_tradeoff_figure(cases, accuracy_floor=_accuracy_floor(question), recommended=recommended)
    if trade_off is None:
        missing[prefix + "accuracy_vs_latency"] = (
            "No accuracy figure: no run has accuracy/top1 (runs on a synthetic dataset measure speed only)."
        )
    else:
        figures[prefix + "accuracy_vs_latency"] = trade_off
    hardware = plots.hardware_figure(cases)
    if hardware is not None:
        figures[prefix + "hardware_comparison"] = hardware
    figures.update({prefix + stem: figure for stem, figure in text_plots.text_figures(cases).items()})
    return figures, missing


def _slug(text: str) -> str:
    return "".join(char if char.isalnum() or char in "-_." else "_" for char in text.replace(" · ", "_")).strip("_")


def _facts(runs: pd.DataFrame, cases: pd.DataFrame, questions: int) -> list[str]:
    kinds = tables.run_kinds(runs).value_counts().to_dict() if not runs.empty else {}
    measured = int(cases["measured"].astype(bool).sum()) if not cases.empty else 0
    status = cases["status"].value_counts().to_dict() if not cases.empty and "status" in cases else {}
    facts = [
        f"{measured} measured case run(s), {status.get('FAILED', 0)} failed, {status.get('KILLED', 0)} killed, "
        f"in {questions} question(s) (model · image size · dataset), never ranked across questions"
    ]
    others = [f"{kinds[kind]} {label}" for kind, label in _OTHER_KINDS.items() if kinds.get(kind)]
    if others:
        facts.append("also in the experiment, not ranked here: " + ", ".join(others))
    if measured:
        facts.append("hardware: " + "; ".join(sorted(cases.loc[cases["measured"].astype(bool), "hardware"].unique())))
    return facts


def build_report(
    runs: pd.DataFrame,
    *,
    title: str,
    source: str = "",
    generated_by: str = "mlperf-track report",
    limits: Limits | None = None,
) -> Report:
    """Build a report from tidy runs (:func:`mlperf_track.report.runs.runs_frame`).

    Args:
        runs: Every run of the experiment(s); only pipeline case runs are ranked (see :func:`tables.run_kinds`).
        title: Heading.
        source: Where the runs came from (shown under the heading).
        generated_by: What made the report (shown under the heading).
        limits: The limits a recommendation respects; ``None``: the accuracy limit the pipelines ran with.
    """
    import pandas as pd

    cases = tables.pipeline_cases(runs)
    if not cases.empty:
        cases = tables.add_pareto_columns(cases)
    questions: list[QuestionResult] = []
    for title_of, group in cases.groupby("question", sort=True) if not cases.empty else []:
        chosen, notes = (limits, []) if limits is not None else sections.limits_from_parents(group, runs)
        questions.append(sections.question_result(str(title_of), group, chosen, notes))
    facts = ([source] if source else []) + _facts(runs, cases, len(questions))
    facts.append(f"generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by {generated_by}")
    figures: dict[str, Figure] = {}
    missing: dict[str, str] = {}
    contents = []
    for question in questions:
        prefix = f"{_slug(question.title)}__" if len(questions) > 1 else ""
        mine, gaps = _figures(question, prefix)
        figures.update(mine)
        missing.update(gaps)
        contents.append(
            SectionContent(
                title=question.title,
                recommendation=question.lines,
                summary=sections.summary_table(question.cases),
                excluded=sections.excluded_table(question.cases),
                figures={stem: plots.figure_png(figure) for stem, figure in mine.items()},
                notes=[*question.notes, *gaps.values()],
            )
        )
    if not questions:
        why = "No run in this experiment measured a case."
        missing = dict.fromkeys((*plots.BATCH_FIGURES, "accuracy_vs_latency"), why)
    judged = pd.concat([q.cases for q in questions], ignore_index=True) if questions else cases
    content = ReportContent(
        title=title,
        facts=facts,
        sections=contents,
        failed=tables.failed_runs(runs),
        notes=[] if questions else [missing["accuracy_vs_latency"]],
    )
    return Report(content, judged, questions, figures, missing)


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


def _candidate_json(candidate: Candidate | None) -> dict[str, Any] | None:
    if candidate is None:
        return None
    return {
        "config": candidate.config,
        "batch_size": candidate.batch_size,
        "hardware": candidate.hardware,
        "run_id": candidate.run_id,
        "run_name": candidate.name,
        "metrics": dict(candidate.metrics),
    }


def _question_json(question: QuestionResult) -> dict[str, Any]:
    limits = question.limits
    answers = {}
    for hardware, answer in question.recommendations.items():
        runner = answer.ranking.runner_up
        answers[hardware] = {
            "recommended": _candidate_json(answer.best),
            "runner_up": _candidate_json(runner[0] if runner else None),
            "runner_up_kind": runner[1] if runner else None,
            "not_eligible": answer.ranking.counts(),
            "text": list(answer.lines),
        }
    return {
        "question": question.title,
        "limits": {
            "max_accuracy_drop": limits.max_accuracy_drop,
            "memory_limit_mb": limits.memory_limit_mb,
            "p99_limit_ms": limits.p99_limit_ms,
        },
        "recommendation": question.lines,
        "by_hardware": answers,
    }


def report_json(report: Report) -> dict[str, Any]:
    """The report's data: facts, the answer per question, per-case rows (params, metrics, labels, Pareto flags,
    eligibility), failures."""

    def records(frame: pd.DataFrame | None) -> list[dict[str, Any]]:
        if frame is None:
            return []
        return [{str(key): _json_value(value) for key, value in row.items()} for row in frame.to_dict("records")]

    return {
        "title": report.content.title,
        "facts": report.content.facts,
        "questions": [_question_json(question) for question in report.questions],
        "cases": records(report.measured),
        "not_measured": records(
            report.cases[~report.cases["measured"].astype(bool)] if not report.cases.empty else None
        ),
        "failed": records(report.content.failed),
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


def parent_limits(mlflow_client: MlflowClient, parent_run_id: str) -> Limits | None:
    """The accuracy limit a pipeline's parent run recorded (``None`` when it recorded none)."""
    return sections.parse_limit(mlflow_client.get_run(parent_run_id).data.params.get(sections.LIMIT_PARAM))


def report_experiment(
    experiment: str,
    output_dir: Path,
    *,
    tracking_uri: str | None = None,
    run_id: str | None = None,
    log: bool = True,
    parent_run_id: str | None = None,
    limits: Limits | None = None,
) -> tuple[dict[str, Path], str | None]:
    """:func:`experiment_report` without the report object: the files written and the run they went to."""
    _, files, logged_to = experiment_report(
        experiment,
        output_dir,
        tracking_uri=tracking_uri,
        run_id=run_id,
        log=log,
        parent_run_id=parent_run_id,
        limits=limits,
    )
    return files, logged_to


def experiment_report(
    experiment: str,
    output_dir: Path,
    *,
    tracking_uri: str | None = None,
    run_id: str | None = None,
    log: bool = True,
    parent_run_id: str | None = None,
    limits: Limits | None = None,
) -> tuple[Report, dict[str, Path], str | None]:
    """Load the runs of an experiment (or of every experiment under a prefix), write the report and log it.

    Args:
        experiment: Experiment name, or a prefix such as ``mlperf_track`` (every ``mlperf_track/...``).
        output_dir: Where the files are written.
        tracking_uri: Tracking URI, or ``None`` for MLflow's current one.
        run_id: The run to log to (a pipeline's parent run); ``None`` starts a run named ``report``.
        log: Log the files to MLflow at all.
        parent_run_id: Report only on the child runs of this parent.
        limits: The limits of the recommendation; ``None``: the accuracy limit the pipelines ran with.

    Returns:
        The report, the files written, and the id of the run they were logged to (``None`` without ``log``).
    """
    runs = load_runs(experiment, tracking_uri=tracking_uri, parent_run_id=parent_run_id)
    if limits is None and parent_run_id is not None:
        limits = parent_limits(client(tracking_uri), parent_run_id)
    names = sorted(resolve_experiments(client(tracking_uri), experiment).values())
    source = f"experiment {names[0]!r}" if len(names) == 1 else f"experiments {', '.join(map(repr, names))}"
    report = build_report(runs, title=f"mlperf_track report: {experiment}", source=source, limits=limits)
    files = write_report(report, output_dir)
    logger.info("wrote the report of %s to %s", experiment, output_dir)
    logged_to = None
    if log and run_id is None and len(names) > 1:
        # A report run in one of the experiments would claim the others' runs; an experiment named after the
        # prefix would turn the prefix into an exact name next time. Only an explicit run gets it.
        logger.warning("a report over %d experiments is logged only to a run given with --run-id", len(names))
    elif log:
        logged_to = log_files(
            files, artifact_dir=REPORT_ARTIFACT_DIR, run_id=run_id, experiment=names[0], tracking_uri=tracking_uri
        )
    return report, files, logged_to


def report_parent_run(
    parent_run_id: str,
    *,
    tracking_uri: str | None = None,
    title: str | None = None,
    facts: Sequence[str] = (),
    limits: Limits | None = None,
) -> Report:
    """Build the report of one pipeline from the child runs of its parent run (nothing is written or logged).

    Args:
        parent_run_id: The parent run; its child runs are the cases.
        tracking_uri: Tracking URI, or ``None`` for MLflow's current one.
        title: Heading; ``None`` names the parent run.
        facts: More lines under the heading (the configuration, say), shown after where the runs came from.
        limits: The limits of the recommendation; ``None``: the one the parent run recorded.
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
        limits=limits if limits is not None else parent_limits(mlflow_client, parent_run_id),
    )
    report.content.facts[1:1] = list(facts)
    return report
