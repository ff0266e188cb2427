"""From tidy runs to what a report shows: case runs with labels, the Pareto front, a summary and the best cases.

Every function takes the frame of :func:`mlperf_track.report.runs.runs_frame` (one row per run; params and
metric keys as columns) and returns pandas objects; nothing here touches MLflow or draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from mlperf_track import metrics as m

if TYPE_CHECKING:
    import pandas as pd

#: Params that identify a configuration (besides the batch size); the ones that vary label the figures.
IDENTITY_PARAMS: Final = (
    "model",
    "variant",
    "runtime",
    "precision",
    "device",
    "image_size",
    "dataset",
    "num_threads",
    "channels_last",
)
#: Always in a configuration label, even when they do not vary.
CORE_PARAMS: Final = ("variant", "runtime", "precision")
#: Summary columns: (heading, metric key or derived column, number format).
SUMMARY_COLUMNS: Final = (
    ("p50 ms", m.LATENCY_P50, "{:.3f}"),
    ("p99 ms", m.LATENCY_P99, "{:.3f}"),
    ("samples/s", m.THROUGHPUT, "{:,.1f}"),
    ("peak memory MB", "memory_mb", "{:,.1f}"),
    ("top-1", m.ACCURACY_TOP1, "{:.4f}"),
    ("Δ top-1", m.ACCURACY_TOP1_DELTA, "{:+.4f}"),
    ("size MB", m.MODEL_SIZE, "{:.2f}"),
    ("TFLOP/s", m.ACHIEVED_TFLOPS, "{:.3f}"),
)
#: A GPU name tag that means "no GPU".
_NO_GPU = ("", "none", "None", "nan")


def _hardware(row: Any) -> str:
    """The GPU for CUDA runs, else the CPU (``unknown`` when the run has no hardware tags)."""
    gpu = str(row.get("hw.gpu", "") or "")
    if row.get("device") == "cuda" and gpu not in _NO_GPU:
        return gpu
    cpu = row.get("hw.cpu")
    return str(cpu) if isinstance(cpu, str) and cpu else "unknown"


def _memory(row: Any) -> float:
    """GPU peak allocated for CUDA runs, else the CPU RSS peak (NaN when neither was measured)."""
    import math

    keys = (m.GPU_PEAK_ALLOCATED, m.CPU_RSS_PEAK) if row.get("device") == "cuda" else (m.CPU_RSS_PEAK,)
    for key in keys:
        value = row.get(key)
        if isinstance(value, (int, float)) and not math.isnan(value):
            return float(value)
    return math.nan


def config_labels(frame: pd.DataFrame) -> pd.Series:
    """``variant/runtime/precision`` plus every other identity param (and option) that varies across rows."""
    options = sorted(column for column in frame.columns if str(column).startswith("option."))
    columns = [c for c in (*IDENTITY_PARAMS, *options) if c in frame.columns]
    varying = [c for c in columns if c in CORE_PARAMS or frame[c].astype(str).nunique(dropna=False) > 1]
    if not varying:
        return frame["run_name"].astype(str)
    prefix = {"channels_last": "cl=", "num_threads": "threads=", "image_size": "px="}

    import pandas as pd

    def label(row: Any) -> str:
        parts = []
        for column in varying:
            value = row.get(column)
            if value is None or pd.isna(value):
                continue
            name = column.removeprefix("option.") + "=" if column.startswith("option.") else prefix.get(column, "")
            parts.append(f"{name}{value}")
        return "/".join(parts)

    return frame.apply(label, axis=1).astype(str)


def case_runs(frame: pd.DataFrame) -> pd.DataFrame:
    """Runs that measured a case (they have a p50 latency), with ``config``, ``hardware`` and ``memory_mb``."""
    import pandas as pd

    if frame.empty or m.LATENCY_P50 not in frame.columns:
        return pd.DataFrame(columns=[*frame.columns, "config", "hardware", "memory_mb"])
    cases = frame[frame[m.LATENCY_P50].notna()].copy().reset_index(drop=True)
    if cases.empty:
        return cases.assign(config=[], hardware=[], memory_mb=[])
    cases["config"] = config_labels(cases)
    cases["hardware"] = cases.apply(_hardware, axis=1).astype(str)
    cases["memory_mb"] = cases.apply(_memory, axis=1).astype(float)
    if "batch_size" not in cases:
        cases["batch_size"] = pd.Series([pd.NA] * len(cases), dtype="Int64")
    return cases


def failed_runs(frame: pd.DataFrame) -> pd.DataFrame:
    """Runs that ended FAILED, with their error tags."""
    if frame.empty:
        return frame
    failed = frame[frame["status"] == "FAILED"]
    columns = [c for c in ("run_name", "run_id", "error.type", "error.message") if c in failed.columns]
    return failed[columns].reset_index(drop=True)


def pareto_mask(frame: pd.DataFrame, objectives: Sequence[tuple[str, bool]]) -> pd.Series:
    """Rows no other row dominates; ``objectives`` are ``(column, maximize)`` pairs; rows with NaN are out."""
    import numpy as np
    import pandas as pd

    columns = [column for column, _ in objectives]
    valid = frame[columns].notna().all(axis=1).to_numpy()
    # Turn every objective into "smaller is better".
    values = np.column_stack([(-1 if maximize else 1) * frame[c].to_numpy(float) for c, maximize in objectives])
    mask = np.zeros(len(frame), dtype=bool)
    for i in np.flatnonzero(valid):
        others = values[valid]
        dominated = np.any(np.all(others <= values[i], axis=1) & np.any(others < values[i], axis=1))
        mask[i] = not dominated
    return pd.Series(mask, index=frame.index)


def add_pareto_columns(cases: pd.DataFrame) -> pd.DataFrame:
    """``pareto``: no other case has both higher throughput and higher top-1 (or, without accuracy, throughput).

    ``pareto_latency``: among the cases at the smallest batch size, none has lower p50 and higher top-1.
    """
    cases = cases.copy()
    has_accuracy = m.ACCURACY_TOP1 in cases and cases[m.ACCURACY_TOP1].notna().any()
    objectives = [(m.THROUGHPUT, True)] + ([(m.ACCURACY_TOP1, True)] if has_accuracy else [])
    cases["pareto"] = pareto_mask(cases, objectives) if m.THROUGHPUT in cases else False
    cases["pareto_latency"] = False
    if has_accuracy and cases["batch_size"].notna().any():
        smallest = cases["batch_size"] == cases["batch_size"].min()
        subset = cases[smallest.fillna(False)]
        cases.loc[subset.index, "pareto_latency"] = pareto_mask(
            subset, [(m.LATENCY_P50, False), (m.ACCURACY_TOP1, True)]
        )
    return cases


def summary_table(cases: pd.DataFrame) -> pd.DataFrame:
    """One formatted row per case, fastest first; metric columns nobody measured are left out."""
    import pandas as pd

    order = cases.sort_values(m.THROUGHPUT, ascending=False) if m.THROUGHPUT in cases else cases
    table = pd.DataFrame({"configuration": order["config"], "batch": order["batch_size"].astype(str)})
    if order["hardware"].nunique() > 1:
        table["hardware"] = order["hardware"]
    for heading, column, fmt in SUMMARY_COLUMNS:
        if column in order and order[column].notna().any():
            table[heading] = [fmt.format(value) if pd.notna(value) else "—" for value in order[column]]
    if "pareto" in order and order["pareto"].any():
        table["Pareto"] = ["★" if flag else "" for flag in order["pareto"]]
    table["run"] = order["run_id"].astype(str).str[:8]
    return table.reset_index(drop=True)


def best_cases(cases: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """The case with the highest throughput, the lowest p50 latency and the best top-1, each as a record."""
    picks = {
        "highest throughput": [(m.THROUGHPUT, False)],
        "lowest p50 latency": [(m.LATENCY_P50, True)],
        # Among equally accurate cases, the fastest.
        "best top-1 accuracy": [(m.ACCURACY_TOP1, False), (m.THROUGHPUT, False)],
    }
    best: dict[str, dict[str, Any]] = {}
    for title, keys in picks.items():
        column = keys[0][0]
        if column not in cases or cases[column].isna().all():
            continue
        present = [(key, ascending) for key, ascending in keys if key in cases]
        ranked = cases[cases[column].notna()].sort_values(
            [key for key, _ in present], ascending=[ascending for _, ascending in present]
        )
        row = ranked.iloc[0]
        best[title] = {
            "config": row["config"],
            "batch_size": _plain(row["batch_size"]),
            "hardware": row["hardware"],
            "run_id": row["run_id"],
            "metric": column,
            "value": float(row[column]),
        }
    return best


def _plain(value: Any) -> Any:
    """A JSON-friendly scalar (pandas NA -> None, numpy ints -> int)."""
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value.item() if hasattr(value, "item") else value
