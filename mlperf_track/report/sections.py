"""One report section per question (model, image size, dataset): eligibility, the answer, and sorted tables.

A section never ranks cases of another question. Within it, each machine gets its own recommendation (the
configuration to ship on that hardware), because the fastest configuration of one machine says nothing about
another. Tables are sorted by batch size, then by throughput within each batch size: a reader compares
configurations at the batch size they will serve with, and the best overall is the recommendation above.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from mlperf_track import metrics as m
from mlperf_track.engine.eligibility import Candidate, Limits, judge
from mlperf_track.report.candidates import from_record
from mlperf_track.report.recommend import Recommendation, recommend

if TYPE_CHECKING:
    import pandas as pd

#: Summary columns: (heading, metric key or derived column, number format).
SUMMARY_COLUMNS: Final = (
    ("p50 ms", m.LATENCY_P50, "{:.3f}"),
    ("p99 ms", m.LATENCY_P99, "{:.3f}"),
    ("samples/s", m.THROUGHPUT, "{:,.1f}"),
    ("peak memory MB", "memory_mb", "{:,.1f}"),
    ("top-1", m.ACCURACY_TOP1, "{:.4f}"),
    ("size MB", m.MODEL_SIZE, "{:.2f}"),
    ("TFLOP/s", m.ACHIEVED_TFLOPS, "{:.3f}"),
)
#: The limit a pipeline applies when its parent run does not say (``PipelineConfig.max_accuracy_drop``).
DEFAULT_MAX_ACCURACY_DROP: Final = 0.01
#: Parent param holding a pipeline's accuracy limit (see ``tracking.listener.config_params``).
LIMIT_PARAM: Final = "config.max_accuracy_drop"


@dataclass
class QuestionResult:
    """What a report shows for one question.

    Attributes:
        title: The question, ``resnet50 · 64 px · digits``.
        limits: The limits applied.
        cases: Its case runs (measured or not) with ``eligible``, ``why_not`` and ``exclusion`` columns.
        recommendations: The answer per machine.
        notes: Lines about how the section was built (the limit's origin, say).
    """

    title: str
    limits: Limits
    cases: pd.DataFrame
    recommendations: dict[str, Recommendation] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def lines(self) -> list[str]:
        """The recommendation lines, prefixed by the machine when there are several."""
        several = len(self.recommendations) > 1
        lines = []
        for hardware, answer in self.recommendations.items():
            lines += [f"on {hardware}: {line}" if several and i == 0 else line for i, line in enumerate(answer.lines)]
        return lines


def parse_limit(text: Any) -> Limits | None:
    """A parent's ``config.max_accuracy_drop`` param as limits (``none``: no limit); ``None`` when absent."""
    if not isinstance(text, str) or not text.strip():
        return None
    if text.strip().lower() == "none":
        return Limits()
    try:
        return Limits(max_accuracy_drop=float(text))
    except ValueError:
        return None


def limits_from_parents(cases: pd.DataFrame, runs: pd.DataFrame) -> tuple[Limits, list[str]]:
    """The accuracy limit the cases' pipelines ran with, and a note when they disagree."""
    found: set[Limits] = set()
    if LIMIT_PARAM in runs and "parent_run_id" in cases:
        parents = runs.set_index("run_id")[LIMIT_PARAM]
        for parent in cases["parent_run_id"].dropna().unique():
            limits = parse_limit(parents.get(parent))
            if limits is not None:
                found.add(limits)
    if not found:
        return Limits(DEFAULT_MAX_ACCURACY_DROP), []
    if len(found) == 1:
        return found.pop(), []
    strictest = min((item.max_accuracy_drop for item in found if item.max_accuracy_drop is not None), default=None)
    note = f"the pipelines ran with different accuracy limits; the strictest ({strictest:g}) is applied"
    return Limits(strictest), [note]


def candidates_of(cases: pd.DataFrame) -> list[Candidate]:
    """The cases as candidates of the eligibility rule."""
    return [from_record(row) for row in cases.to_dict("records")]


def question_result(title: str, cases: pd.DataFrame, limits: Limits, notes: list[str] | None = None) -> QuestionResult:
    """Judge every case of one question and make one recommendation per machine."""
    cases = cases.copy()
    candidates = candidates_of(cases)
    verdicts = [judge(candidate, limits) for candidate in candidates]
    cases["eligible"] = [verdict.eligible for verdict in verdicts]
    cases["exclusion"] = [verdict.category for verdict in verdicts]
    cases["why_not"] = [verdict.text for verdict in verdicts]
    result = QuestionResult(title, limits, cases, notes=list(notes or []))
    for hardware in sorted(cases["hardware"].unique()):
        mine = [candidate for candidate in candidates if candidate.hardware == hardware]
        result.recommendations[hardware] = recommend(mine, limits)
    cells = zip(candidates, verdicts, strict=True)
    cases["verdict"] = [_verdict_cell(result, candidate, verdict.category) for candidate, verdict in cells]
    return result


def _verdict_cell(result: QuestionResult, candidate: Candidate, category: str) -> str:
    answer = result.recommendations[candidate.hardware]
    runner = answer.ranking.runner_up
    if answer.best is not None and candidate.run_id == answer.best.run_id:
        return "recommended"
    if runner is not None and candidate.run_id == runner[0].run_id:
        return "runner-up"
    return "eligible" if not category else f"not eligible: {category}"


def _delta_cell(row: Any) -> str:
    import pandas as pd

    delta = row.get(m.ACCURACY_TOP1_DELTA)
    if delta is None or pd.isna(delta):
        return "—"
    text = f"{100 * delta:+.1f}"
    low, high = row.get(m.ACCURACY_TOP1_DELTA_CI_LOW), row.get(m.ACCURACY_TOP1_DELTA_CI_HIGH)
    if low is not None and high is not None and not pd.isna(low) and not pd.isna(high):
        text += f" [{100 * low:+.1f}, {100 * high:+.1f}]"
    return text


def summary_table(cases: pd.DataFrame) -> pd.DataFrame:
    """One formatted row per measured case, by batch size then fastest first; unmeasured metrics left out."""
    import pandas as pd

    measured = cases[cases["measured"].astype(bool)] if "measured" in cases else cases
    keys = [key for key in ("hardware", "batch_size", m.THROUGHPUT) if key in measured]
    order = measured.sort_values(keys, ascending=[key != m.THROUGHPUT for key in keys], na_position="last")
    table = pd.DataFrame({"configuration": order["config"], "batch": order["batch_size"].astype(str)})
    if order["hardware"].nunique() > 1:
        table["hardware"] = order["hardware"]
    for heading, column, fmt in SUMMARY_COLUMNS:
        if column in order and order[column].notna().any():
            table[heading] = [fmt.format(value) if pd.notna(value) else "—" for value in order[column]]
    if m.ACCURACY_TOP1_DELTA in order and order[m.ACCURACY_TOP1_DELTA].notna().any():
        table["Δ top-1 points [95% CI]"] = [_delta_cell(row) for _, row in order.iterrows()]
    if "pareto" in order and order["pareto"].any():
        table["Pareto"] = ["★" if flag else "" for flag in order["pareto"]]
    if "verdict" in order:
        table["verdict"] = order["verdict"]
    table["run"] = order["run_id"].astype(str).str[:8]
    return table.reset_index(drop=True)


def excluded_table(cases: pd.DataFrame) -> pd.DataFrame:
    """Every case that may not be named best, with its reason category and the reasons in words."""
    import pandas as pd

    if "eligible" not in cases:
        return pd.DataFrame()
    excluded = cases[~cases["eligible"].astype(bool)]
    columns = {"config": "configuration", "batch_size": "batch", "exclusion": "reason", "why_not": "why"}
    if cases["hardware"].nunique() > 1:
        columns = {
            "config": "configuration",
            "batch_size": "batch",
            "hardware": "hardware",
            **{k: v for k, v in columns.items() if k not in ("config", "batch_size")},
        }
    table = excluded[list(columns)].rename(columns=columns).astype({"batch": str})
    table["run"] = excluded["run_id"].astype(str).str[:8]
    return table.reset_index(drop=True)
