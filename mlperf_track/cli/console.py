"""What ``bench``, ``run``, ``profile``, ``tune`` and ``report`` print: a sorted table, then the answer in words.

The table has one row per case, sorted by batch size and, within each batch size, fastest first (a reader
compares configurations at the batch size they serve with; the best overall is the recommendation below it).
The last column says whether a case may be recommended and, if not, why (the eligibility rule of
:mod:`mlperf_track.engine.eligibility`). The recommendation text is :mod:`mlperf_track.report.recommend`'s, the
same the parent run and the report carry. Rich tables are the one place the package prints instead of logging.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from mlperf_track import metrics as m
from mlperf_track.engine.eligibility import Verdict
from mlperf_track.pipeline.candidates import from_outcome, outcome_limits
from mlperf_track.pipeline.events import CaseOutcome, PipelineOutcome
from mlperf_track.report.recommend import Recommendation, question_heading, recommend

if TYPE_CHECKING:
    from mlperf_track.report.build import Report
    from mlperf_track.tuning.runner import TuneOutcome

#: Columns of the printed table: (header, metric key, format).
COLUMNS = (
    ("p50 ms", m.LATENCY_P50, "{:.3f}"),
    ("p99 ms", m.LATENCY_P99, "{:.3f}"),
    ("samples/s", m.THROUGHPUT, "{:.1f}"),
    ("cv", m.LATENCY_CV, "{:.3f}"),
    ("RSS MB", m.CPU_RSS_PEAK, "{:.0f}"),
    ("GPU MB", m.GPU_PEAK_ALLOCATED, "{:.0f}"),
    ("top-1", m.ACCURACY_TOP1, "{:.3f}"),
    ("Δ top-1 pts", m.ACCURACY_TOP1_DELTA, "{:+.1f}"),
    ("GFLOP/sample", m.MODEL_FLOPS, "{:.3f}"),
    ("prepare s", m.STARTUP_PREPARE, "{:.2f}"),
)
#: Columns shown only when some case has the metric (text models).
TEXT_COLUMNS = (
    ("tokens/s", m.TOKENS_PER_S, "{:.1f}"),
    ("TTFT p50 ms", m.TTFT_P50, "{:.2f}"),
    ("TPOT p50 ms", m.TPOT_P50, "{:.2f}"),
    ("KV MB", m.KV_CACHE, "{:.2f}"),
    ("ppl", m.ACCURACY_PERPLEXITY, "{:.2f}"),
    ("Δ ppl", m.ACCURACY_PERPLEXITY_DELTA, "{:+.2f}"),
)
#: Metrics shown scaled: GFLOP from FLOP, points from a fraction.
_SCALE = {m.MODEL_FLOPS: 1e-9, m.ACCURACY_TOP1_DELTA: 100.0}


def make_console() -> Console:
    """A console on stdout; a pipe or a log file gets a wide one rather than rich's 80-column fallback."""
    return Console() if sys.stdout.isatty() else Console(width=200)


def outcome_recommendation(outcome: PipelineOutcome) -> Recommendation:
    """The answer of a pipeline run, from the outcomes in memory (the parent run carries the same text)."""
    config = outcome.config
    device = outcome.outcomes[0].case.device if outcome.outcomes else config.device
    heading = question_heading(config.model, config.image_size, config.dataset, device)
    return recommend([from_outcome(item) for item in outcome.outcomes], outcome_limits(outcome), heading=heading)


def _sort_key(item: CaseOutcome) -> tuple[int, float, str]:
    throughput = item.result.metrics.get(m.THROUGHPUT) if item.result is not None else None
    return item.case.batch_size, -(throughput if throughput is not None else -1.0), item.case.name


def _verdict_cell(outcome: CaseOutcome, verdict: Verdict, answer: Recommendation) -> str:
    best, runner = answer.best, answer.ranking.runner_up
    if best is not None and best.name == outcome.case.name:
        return "[bold green]recommended[/bold green]"
    if runner is not None and runner[0].name == outcome.case.name:
        return "[green]runner-up[/green]"
    if verdict.eligible:
        return "eligible"
    return f"[yellow]{verdict.category}[/yellow]"


def render_table(outcome: PipelineOutcome, answer: Recommendation | None = None) -> Table:
    """One row per case, by batch size then fastest first; a metric that was not measured shows as ``-``."""
    answer = answer or outcome_recommendation(outcome)
    verdicts = {candidate.name: verdict for candidate, verdict in answer.ranking.judged}
    device = outcome.outcomes[0].case.device if outcome.outcomes else "?"
    table = Table(title=f"{outcome.config.model} on {device} (by batch size, fastest first)")
    table.add_column("case")
    measured = {key for item in outcome.outcomes if item.result is not None for key in item.result.metrics}
    columns = (*COLUMNS, *(column for column in TEXT_COLUMNS if column[1] in measured))
    for header, _, _ in columns:
        table.add_column(header, justify="right")
    table.add_column("verdict")
    for case_outcome in sorted(outcome.outcomes, key=_sort_key):
        verdict = verdicts.get(case_outcome.case.name, Verdict())
        if case_outcome.result is None:
            cells = ["failed"] + ["-"] * (len(columns) - 1)
        else:
            values = case_outcome.result.metrics
            cells = [
                "-" if values.get(key) is None else fmt.format(values[key] * _SCALE.get(key, 1.0))
                for _, key, fmt in columns
            ]
        table.add_row(case_outcome.case.name, *cells, _verdict_cell(case_outcome, verdict, answer))
    return table


def print_recommendation(console: Console, lines: Sequence[str], title: str = "Recommendation") -> None:
    """The answer in a box: one sentence per line."""
    console.print(Panel("\n".join(lines), title=title, title_align="left", border_style="green", expand=False))


def print_outcome(outcome: PipelineOutcome, shown_files: tuple[str, ...] = ()) -> Console:
    """Print the sorted table of cases, each failure's reason, the files named in ``shown_files`` and the answer.

    Returns:
        The console used, for more lines (the parent run id).
    """
    console = make_console()
    answer = outcome_recommendation(outcome)
    console.print(render_table(outcome, answer))
    for case_outcome in outcome.outcomes:
        if case_outcome.error is not None:
            error = case_outcome.error
            console.print(f"[red]{case_outcome.case.name} failed:[/red] {type(error).__name__}: {error}")
        for name in shown_files:
            if name in case_outcome.artifacts:
                console.print(f"{case_outcome.case.name}: {name} -> {case_outcome.artifacts[name]}")
    print_recommendation(console, answer.lines)
    return console


def print_report(report: Report, console: Console | None = None) -> Console:
    """The answer of every question of a report (one box each)."""
    console = console or make_console()
    for question in report.questions:
        print_recommendation(console, question.lines, title=f"Recommendation: {question.title}")
    if not report.questions:
        console.print("No run measured a case: nothing to recommend.")
    return console


def tune_recommendation(outcome: TuneOutcome) -> Recommendation:
    """The answer of a study (the tune parent run carries the same text)."""
    template = outcome.template
    heading = question_heading(template.model, template.image_size, template.dataset, template.device)
    return outcome.summary.recommendation(heading)


def print_tune_answer(outcome: TuneOutcome, console: Console | None = None) -> Console:
    """The answer of a study, in a box, after the tuner's own table."""
    console = console or make_console()
    print_recommendation(console, tune_recommendation(outcome).lines)
    return console
