"""Rendering a report's content as Markdown and as one self-contained HTML page.

Markdown tables are written here (a few lines) because ``DataFrame.to_markdown`` needs ``tabulate``, which is
not a dependency. The HTML page inlines its CSS and its figures (base64 PNG), so it opens from the MLflow
artifact view, a mail attachment or a CI artifact without any other file.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

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


@dataclass
class SectionContent:
    """What a report shows for one question (model, image size, dataset).

    Attributes:
        title: The question (``resnet50 · 64 px · digits``).
        recommendation: The answer in words (one sentence per line).
        summary: The formatted summary table (by batch size, fastest first within each).
        excluded: The cases that may not be named best, with why.
        figures: PNG bytes by file stem, in display order (stems may carry the section's prefix).
        notes: Why a figure is missing, how the limits were chosen.
    """

    title: str
    recommendation: list[str]
    summary: pd.DataFrame
    excluded: pd.DataFrame
    figures: dict[str, bytes] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class ReportContent:
    """Everything a report shows, already computed.

    Attributes:
        title: Heading.
        facts: One-line facts under the heading (source, counts, machines), in order.
        sections: One per question.
        failed: Failed and killed runs with their error tags.
        notes: Report-wide notes (what was left out and why).
    """

    title: str
    facts: list[str]
    sections: list[SectionContent] = field(default_factory=list)
    failed: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def figures(self) -> dict[str, bytes]:
        """Every section's figures by file stem."""
        return {stem: png for section in self.sections for stem, png in section.figures.items()}


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


def _figure_title(stem: str) -> str:
    return next((title for key, title in FIGURE_TITLES.items() if stem.endswith(key)), stem)


def _section_markdown(section: SectionContent, level: str, figure_dir: str) -> list[str]:
    lines = [f"{level} Summary", "", "Sorted by batch size, fastest first within each batch size.", ""]
    lines += [markdown_table(section.summary) if not section.summary.empty else "No case runs.", ""]
    if not section.excluded.empty:
        lines += [f"{level} Not eligible to be recommended", "", markdown_table(section.excluded), ""]
    for stem in section.figures:
        lines += [f"{level} {_figure_title(stem)}", "", f"![{stem}]({figure_dir}/{stem}.png)", ""]
    if section.notes:
        lines += [f"{level} Notes", ""] + [f"- {note}" for note in section.notes] + [""]
    return lines


def render_markdown(content: ReportContent, figure_dir: str = "figures") -> str:
    """The report as Markdown; figures are referenced as ``<figure_dir>/<stem>.png`` next to the file."""
    lines = [f"# {content.title}", ""]
    lines += [f"- {fact}" for fact in content.facts] + [""]
    several = len(content.sections) > 1
    if content.sections:
        lines += ["## Recommendation", ""]
        for section in content.sections:
            lines += [f"**{section.title}**", ""] if several else []
            lines += [f"- {line}" for line in section.recommendation] + [""]
    for section in content.sections:
        if several:
            lines += [f"## {section.title}", ""]
        lines += _section_markdown(section, "###" if several else "##", figure_dir)
    if not content.sections:
        lines += ["## Summary", "", "No case runs.", ""]
    if content.failed is not None and not content.failed.empty:
        lines += ["## Failed and killed runs", "", markdown_table(content.failed), ""]
    if content.notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in content.notes] + [""]
    return "\n".join(lines)


def _html_table(frame: pd.DataFrame) -> str:
    table = frame.to_html(index=False, escape=True, border=0, classes="table", na_rep="—")
    return f'<div class="scroll">{table}</div>'


def _html_list(items: Sequence[str], css: str = "") -> str:
    attribute = f' class="{css}"' if css else ""
    return f"<ul{attribute}>" + "".join(f"<li>{html.escape(item)}</li>" for item in items) + "</ul>"


def _section_html(section: SectionContent, tag: str) -> list[str]:
    parts = [f"<{tag}>Summary</{tag}><p>Sorted by batch size, fastest first within each batch size.</p>"]
    parts.append(_html_table(section.summary) if not section.summary.empty else "<p>No case runs.</p>")
    if not section.excluded.empty:
        parts.append(f"<{tag}>Not eligible to be recommended</{tag}>" + _html_table(section.excluded))
    for stem, png in section.figures.items():
        encoded = base64.b64encode(png).decode("ascii")
        title = html.escape(_figure_title(stem))
        parts.append(f'<{tag}>{title}</{tag}><img alt="{html.escape(stem)}" src="data:image/png;base64,{encoded}">')
    if section.notes:
        parts.append(f"<{tag}>Notes</{tag}>" + _html_list(section.notes))
    return parts


def render_html(content: ReportContent) -> str:
    """The report as one HTML page with inline CSS and base64 PNG figures."""
    parts = [f"<h1>{html.escape(content.title)}</h1>", _html_list(content.facts, "facts")]
    several = len(content.sections) > 1
    if content.sections:
        boxes = "".join(
            '<div class="answer">'
            + (f'<div class="label">{html.escape(section.title)}</div>' if several else "")
            + "".join(f"<p>{html.escape(line)}</p>" for line in section.recommendation)
            + "</div>"
            for section in content.sections
        )
        parts.append(f"<h2>Recommendation</h2>{boxes}")
    for section in content.sections:
        if several:
            parts.append(f"<h2>{html.escape(section.title)}</h2>")
        parts += _section_html(section, "h3" if several else "h2")
    if not content.sections:
        parts.append("<h2>Summary</h2><p>No case runs.</p>")
    if content.failed is not None and not content.failed.empty:
        parts.append("<h2>Failed and killed runs</h2>" + _html_table(content.failed))
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
.answer { border-left: 4px solid #1f883d; background: #f6fff8; padding: .4rem 1rem; margin: .6rem 0; }
.answer .label { font-weight: 600; margin-top: .3rem; }
.answer p { margin: .35rem 0; }
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
