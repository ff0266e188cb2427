"""Rendering a report's content as Markdown and as one self-contained HTML page.

Markdown tables are written here (a few lines) because ``DataFrame.to_markdown`` needs ``tabulate``, which is
not a dependency. The HTML page inlines its CSS and its figures (base64 PNG), so it opens from the MLflow
artifact view, a mail attachment or a CI artifact without any other file.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlperf_track import metrics as m

if TYPE_CHECKING:
    import pandas as pd

#: Figure file stem -> section heading.
FIGURE_TITLES = {
    "latency_vs_batch_size": "Latency against batch size",
    "throughput_vs_batch_size": "Throughput against batch size",
    "memory_vs_batch_size": "Peak memory against batch size (GPU peak allocated on cuda, process RSS on cpu)",
    "accuracy_vs_latency": "Accuracy against latency and throughput (Pareto front)",
    "hardware_comparison": "Hardware comparison",
}
_UNITS = {m.THROUGHPUT: "samples/s", m.LATENCY_P50: "ms", m.ACCURACY_TOP1: "top-1"}


@dataclass
class ReportContent:
    """Everything a report shows, already computed.

    Attributes:
        title: Heading.
        facts: One-line facts under the heading (source, counts, machines), in order.
        best: Best cases by criterion (see :func:`mlperf_track.report.tables.best_cases`).
        summary: The formatted summary table.
        failed: Failed runs with their error tags.
        figures: PNG bytes by file stem, in display order.
        notes: Why a figure or section is missing.
    """

    title: str
    facts: list[str]
    best: dict[str, dict[str, Any]]
    summary: pd.DataFrame
    failed: pd.DataFrame
    figures: dict[str, bytes] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of ``frame`` (strings as they are; ``|`` escaped)."""

    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(cell(column) for column in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(cell(value) for value in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def format_value(value: float) -> str:
    """A headline number: thousands separators for large values, four significant digits for small ones."""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:,.1f}"
    return f"{value:.4g}"


def _best_lines(best: Mapping[str, Mapping[str, Any]]) -> list[str]:
    lines = []
    for title, pick in best.items():
        unit = _UNITS.get(pick["metric"], pick["metric"])
        value = format_value(pick["value"])
        lines.append(
            f"{title}: {pick['config']}, batch {pick['batch_size']} on {pick['hardware']}: "
            f"{value} {unit} (run {str(pick['run_id'])[:8]})"
        )
    return lines


def render_markdown(content: ReportContent, figure_dir: str = "figures") -> str:
    """The report as Markdown; figures are referenced as ``<figure_dir>/<stem>.png`` next to the file."""
    lines = [f"# {content.title}", ""]
    lines += [f"- {fact}" for fact in content.facts] + [""]
    if content.best:
        lines += ["## Best configurations", ""] + [f"- {line}" for line in _best_lines(content.best)] + [""]
    lines += ["## Summary", ""]
    lines += [markdown_table(content.summary) if not content.summary.empty else "No case runs.", ""]
    for stem in content.figures:
        lines += [f"## {FIGURE_TITLES.get(stem, stem)}", "", f"![{stem}]({figure_dir}/{stem}.png)", ""]
    if not content.failed.empty:
        lines += ["## Failed runs", "", markdown_table(content.failed), ""]
    if content.notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in content.notes] + [""]
    return "\n".join(lines)


def _html_table(frame: pd.DataFrame) -> str:
    table = frame.to_html(index=False, escape=True, border=0, classes="table", na_rep="—")
    return f'<div class="scroll">{table}</div>'


def _html_list(items: Sequence[str], css: str = "") -> str:
    attribute = f' class="{css}"' if css else ""
    return f"<ul{attribute}>" + "".join(f"<li>{html.escape(item)}</li>" for item in items) + "</ul>"


def render_html(content: ReportContent) -> str:
    """The report as one HTML page with inline CSS and base64 PNG figures."""
    parts = [f"<h1>{html.escape(content.title)}</h1>", _html_list(content.facts, "facts")]
    if content.best:
        cards = "".join(
            f'<div class="card"><div class="label">{html.escape(title)}</div>'
            f'<div class="value">{format_value(pick["value"])} {html.escape(_UNITS.get(pick["metric"], ""))}</div>'
            f'<div class="detail">{html.escape(str(pick["config"]))}, batch {pick["batch_size"]}<br>'
            f"{html.escape(str(pick['hardware']))}</div></div>"
            for title, pick in content.best.items()
        )
        parts.append(f'<h2>Best configurations</h2><div class="cards">{cards}</div>')
    parts.append("<h2>Summary</h2>")
    parts.append(_html_table(content.summary) if not content.summary.empty else "<p>No case runs.</p>")
    for stem, png in content.figures.items():
        encoded = base64.b64encode(png).decode("ascii")
        title = html.escape(FIGURE_TITLES.get(stem, stem))
        parts.append(f'<h2>{title}</h2><img alt="{html.escape(stem)}" src="data:image/png;base64,{encoded}">')
    if not content.failed.empty:
        parts.append("<h2>Failed runs</h2>" + _html_table(content.failed))
    if content.notes:
        parts.append("<h2>Notes</h2>" + _html_list(content.notes))
    body = "\n".join(parts)
    return _PAGE.format(title=html.escape(content.title), css=_CSS, body=body)


_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 2rem auto;
       max-width: 1360px; padding: 0 1.5rem; color: #1f2328; line-height: 1.45; }
h1 { font-size: 1.7rem; margin-bottom: .3rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #d0d7de; padding-bottom: .3rem; }
ul.facts { color: #57606a; padding-left: 1.1rem; margin-top: .3rem; }
.cards { display: flex; gap: 1rem; flex-wrap: wrap; }
.card { border: 1px solid #d0d7de; border-radius: 8px; padding: .8rem 1rem; min-width: 220px; background: #f6f8fa; }
.card .label { font-size: .8rem; text-transform: uppercase; letter-spacing: .04em; color: #57606a; }
.card .value { font-size: 1.5rem; font-weight: 600; margin: .2rem 0; }
.card .detail { font-size: .85rem; color: #57606a; }
.scroll { overflow-x: auto; max-width: 100%; }
table.table { border-collapse: collapse; font-size: .85rem; width: 100%; }
table.table th { background: #f6f8fa; text-align: left; position: sticky; top: 0; }
table.table th, table.table td { padding: .35rem .5rem; border-bottom: 1px solid #d8dee4; }
table.table th { white-space: nowrap; }
table.table tr:hover td { background: #fff8c5; }
img { max-width: 100%; border: 1px solid #d8dee4; border-radius: 6px; margin-top: .4rem; }
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
{body}
</body>
</html>
"""
