"""A minimal Markdown and HTML report for the parent run of a pipeline.

The Markdown report is a title, the configuration, the best case and the summary table; the HTML report is
the same with the figures embedded as PNG (base64), so it opens from the MLflow artifact view without any
other file. The richer reports of :mod:`mlperf_track.report` can replace this later.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

from mlperf_track.tracking.summary import SUMMARY_METRICS

#: Columns of the report table, in order.
TABLE_COLUMNS = ("case", "status", *SUMMARY_METRICS, "error")


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] = TABLE_COLUMNS) -> str:
    """A GitHub-flavoured Markdown table.

    Hand-written (ten lines) because ``DataFrame.to_markdown`` needs the ``tabulate`` package, which is not
    a dependency of this project.
    """
    header = "| " + " | ".join(columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = [
        "| " + " | ".join(_cell(row.get(column)).replace("|", "\\|").replace("\n", " ") for column in columns) + " |"
        for row in rows
    ]
    return "\n".join([header, rule, *body])


def build_markdown(
    title: str,
    *,
    config: Mapping[str, str],
    rows: Sequence[Mapping[str, Any]],
    best: Mapping[str, Any] | None,
    notes: Mapping[str, str] | None = None,
) -> str:
    """The Markdown report.

    Args:
        title: Heading (e.g. ``mlperf_track: resnet18 on cpu``).
        config: Resolved configuration, shown as a list.
        rows: Summary rows (see :func:`mlperf_track.tracking.summary.summary_row`).
        best: The best row, or ``None`` when no case succeeded.
        notes: Why a figure or metric is missing, shown at the end.
    """
    lines = [f"# {title}", "", "## Configuration", ""]
    lines += [f"- **{key}**: {value}" for key, value in config.items()]
    ok = sum(1 for row in rows if row.get("status") == "ok")
    lines += ["", f"{ok} of {len(rows)} cases measured; {len(rows) - ok} failed.", "", "## Best case", ""]
    if best is None:
        lines.append("No case produced a throughput, so there is no best case.")
    else:
        lines.append(f"**{best['case']}** (highest throughput):")
        lines += [f"- {key}: {_cell(best.get(key))}" for key in SUMMARY_METRICS if not _is_nan(best.get(key))]
    lines += ["", "## Cases", "", markdown_table(rows)]
    if notes:
        lines += ["", "## Notes", ""]
        lines += [f"- {key}: {value}" for key, value in notes.items()]
    return "\n".join(lines) + "\n"


def _is_nan(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _html_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] = TABLE_COLUMNS) -> str:
    head = "".join(f"<th>{html.escape(column)}</th>" for column in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(row.get(column)))}</td>" for column in columns) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}"
    "table{border-collapse:collapse;font-size:0.9em}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
    "th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%;margin:1em 0}"
)


def build_html(
    title: str,
    *,
    config: Mapping[str, str],
    rows: Sequence[Mapping[str, Any]],
    best: Mapping[str, Any] | None,
    figures: Mapping[str, bytes],
    notes: Mapping[str, str] | None = None,
) -> str:
    """A self-contained HTML report: the Markdown report's content plus the figures as embedded PNGs.

    Args:
        title: Page title and heading.
        config: Resolved configuration.
        rows: Summary rows.
        best: The best row, or ``None``.
        figures: PNG bytes by figure name.
        notes: Why a figure or metric is missing.
    """
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1><h2>Configuration</h2><ul>",
    ]
    parts += [f"<li><b>{html.escape(key)}</b>: {html.escape(str(value))}</li>" for key, value in config.items()]
    parts.append("</ul><h2>Best case</h2>")
    if best is None:
        parts.append("<p>No case produced a throughput, so there is no best case.</p>")
    else:
        items = "".join(
            f"<li>{html.escape(key)}: {html.escape(_cell(best.get(key)))}</li>"
            for key in SUMMARY_METRICS
            if not _is_nan(best.get(key))
        )
        parts.append(f"<p><b>{html.escape(str(best['case']))}</b> (highest throughput)</p><ul>{items}</ul>")
    parts.append("<h2>Figures</h2>")
    for name, png in figures.items():
        encoded = base64.b64encode(png).decode("ascii")
        parts.append(
            f"<figure><img alt='{html.escape(name)}' src='data:image/png;base64,{encoded}'>"
            f"<figcaption>{html.escape(name)}</figcaption></figure>"
        )
    parts += ["<h2>Cases</h2>", _html_table(rows)]
    if notes:
        parts.append("<h2>Notes</h2><ul>")
        parts += [f"<li>{html.escape(key)}: {html.escape(value)}</li>" for key, value in notes.items()]
        parts.append("</ul>")
    parts.append("</body></html>")
    return "".join(parts)
