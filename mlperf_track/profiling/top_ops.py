"""The heaviest operators of a profile as a Markdown table (from ``key_averages``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: Names that are step markers or profiler bookkeeping, not operators.
_NOT_OPERATORS = ("ProfilerStep",)


def _is_operator(row: Any, marker: str) -> bool:
    name = str(row.key)
    return name != marker and not name.startswith(_NOT_OPERATORS)


def _sort_value(row: Any, device_time: bool) -> float:
    return float(row.self_device_time_total if device_time else row.self_cpu_time_total)


#: Columns of text (left-aligned); every other column is a number (right-aligned).
_TEXT_COLUMNS = ("Operator", "Input shapes")


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    rule = "|" + "|".join("---" if name in _TEXT_COLUMNS else "---:" for name in header) + "|"
    lines = ["| " + " | ".join(header) + " |", rule]
    lines.extend("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows)
    return lines


def operator_rows(averages: Sequence[Any], *, marker: str, device_time: bool) -> list[Any]:
    """The operator rows of ``key_averages()``, heaviest first (by self device time on GPU, else self CPU)."""
    rows = [row for row in averages if _is_operator(row, marker)]
    return sorted(rows, key=lambda row: -_sort_value(row, device_time))


def top_ops_markdown(
    averages: Sequence[Any],
    by_shape: Sequence[Any],
    *,
    marker: str,
    steps: int,
    device_time: bool,
    title: str,
    notes: Sequence[str] = (),
    limit: int = 20,
) -> str:
    """Render the top operators, per profiled step.

    Args:
        averages: ``prof.key_averages()``.
        by_shape: ``prof.key_averages(group_by_input_shape=True)``.
        marker: The step marker's name (left out of the tables).
        steps: Number of profiled steps; every figure is divided by it.
        device_time: Sort by and show self device (CUDA) time.
        title: Heading of the document.
        notes: Extra lines under the heading (how to read an opaque runtime's profile, ...).
        limit: Rows per table.

    Returns:
        A Markdown document.
    """
    rows = operator_rows(averages, marker=marker, device_time=device_time)
    total_cpu = sum(max(float(row.self_cpu_time_total), 0.0) for row in rows) or 1.0
    total_device = sum(max(float(row.self_device_time_total), 0.0) for row in rows) or 1.0
    header = ["Operator", "Calls/step", "Self CPU ms/step", "Self CPU %", "CPU total ms/step"]
    if device_time:
        header += ["Self CUDA ms/step", "Self CUDA %"]
    header += ["CPU mem MB/step", "GFLOP/s"]
    table = []
    for row in rows[:limit]:
        cells = [
            str(row.key),
            f"{row.count / steps:g}",
            f"{row.self_cpu_time_total / 1000 / steps:.3f}",
            f"{100 * row.self_cpu_time_total / total_cpu:.1f}",
            f"{row.cpu_time_total / 1000 / steps:.3f}",
        ]
        if device_time:
            cells += [
                f"{row.self_device_time_total / 1000 / steps:.3f}",
                f"{100 * row.self_device_time_total / total_device:.1f}",
            ]
        memory_mb = row.self_cpu_memory_usage / 2**20 / steps
        cells += [f"{memory_mb:.2f}".replace("-0.00", "0.00"), _gflops(row, device_time)]
        table.append(cells)
    lines = [f"# {title}", "", f"Averaged over {steps} profiled step(s); times are self times unless noted.", ""]
    lines += [f"> {note}" for note in notes] + ([""] if notes else [])
    lines += _markdown_table(header, table)
    lines += ["", "## Heaviest operators by input shape", ""]
    shape_rows = operator_rows(by_shape, marker=marker, device_time=device_time)[: min(limit, 10)]
    time_name = "Self CUDA ms/step" if device_time else "Self CPU ms/step"
    lines += _markdown_table(
        ["Operator", "Input shapes", time_name, "Calls/step"],
        [
            [
                str(row.key),
                str(row.input_shapes),
                f"{_sort_value(row, device_time) / 1000 / steps:.3f}",
                f"{row.count / steps:g}",
            ]
            for row in shape_rows
        ],
    )
    return "\n".join(lines) + "\n"


def _gflops(row: Any, device_time: bool) -> str:
    """Achieved GFLOP/s from the profiler's FLOP estimate (conv, matmul, ...), blank when it has none."""
    flops = float(getattr(row, "flops", 0) or 0)
    seconds = float(row.device_time_total if device_time else row.cpu_time_total) / 1e6
    if flops <= 0 or seconds <= 0:
        return ""
    return f"{flops / seconds / 1e9:.1f}"
