"""From tidy runs to the case rows a report ranks: what each run is, labels, the question it answers, Pareto flags.

Every function takes the frame of :func:`mlperf_track.report.runs.runs_frame` (one row per run; params and
metric keys as columns) and returns pandas objects; nothing here touches MLflow or draws.

An experiment holds more than pipeline cases: the pipeline's parent runs, report runs, ``tune`` runs and
their trials, evaluator runs (``mlflow.models.evaluate``), load sweeps, failed and killed runs, and runs of
other models.
:func:`run_kinds` tells them apart, so only the cases of a pipeline are ranked, and each only against cases
of the same question (:data:`QUESTION_PARAMS`: model, image size and dataset).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from mlperf_track import metrics as m
from mlperf_track.report.candidates import question_of

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
    "seq_len",
    "prompt_len",
    "output_len",
)
#: Always in a configuration label, even when they do not vary.
CORE_PARAMS: Final = ("variant", "runtime", "precision")
#: What a case answers; cases of different questions are never ranked against each other.
QUESTION_PARAMS: Final = ("model", "image_size", "dataset")
#: Params every pipeline case run has.
CASE_PARAMS: Final = ("variant", "runtime", "precision", "batch_size")
#: Kinds of run in an experiment (see :func:`run_kinds`).
CASE, PIPELINE, TUNE, TRIAL, EVALUATOR, REPORT, LOAD, OTHER = (
    "case",
    "pipeline",
    "tune",
    "tuning trial",
    "evaluator",
    "report",
    "load test",
    "other",
)
#: A GPU name tag that means "no GPU".
_NO_GPU = ("", "none", "None", "nan")
#: Evaluator metrics carry the batch size as a suffix (``latency/p50_ms_bs32``).
_SUFFIXED = re.compile(r"_bs\d+$")


def _tag(frame: pd.DataFrame, key: str) -> pd.Series:
    """Tag ``key`` of every run (``tag.<key>`` where a param or metric had the same name), NaN when absent."""
    import pandas as pd

    series = pd.Series([None] * len(frame), index=frame.index, dtype=object)
    for column in (key, f"tag.{key}"):
        if column in frame:
            series = series.where(series.notna(), frame[column])
    return series


def run_kinds(frame: pd.DataFrame) -> pd.Series:
    """What each run is: :data:`CASE`, :data:`PIPELINE`, :data:`TUNE`, :data:`TRIAL`, :data:`EVALUATOR`,
    :data:`REPORT`, :data:`LOAD` (a load sweep and its points) or :data:`OTHER`."""
    import pandas as pd

    kinds = pd.Series(OTHER, index=frame.index, dtype=object)
    if frame.empty:
        return kinds
    has_case_params = pd.Series(True, index=frame.index)
    for column in CASE_PARAMS:
        has_case_params &= frame[column].notna() if column in frame else False
    suffixed = [column for column in frame.columns if "/" in str(column) and _SUFFIXED.search(str(column))]
    evaluator = _tag(frame, "mlperf_track.call").notna()
    if suffixed:
        evaluator |= frame[suffixed].notna().any(axis=1)
    role, command = _tag(frame, "mlperf_track.role"), _tag(frame, "mlperf_track.command")
    # Later rules win: a tuning trial has every case param too.
    kinds[has_case_params] = CASE
    kinds[evaluator] = EVALUATOR
    kinds[role == "pipeline"] = PIPELINE
    kinds[role == "report"] = REPORT
    load_params = [column for column in frame.columns if str(column).startswith(("load.", "deploy."))]
    kinds[(role == "load") | (frame[load_params].notna().any(axis=1) if load_params else False)] = LOAD
    kinds[(command == "tune") | (frame["study.objective"].notna() if "study.objective" in frame else False)] = TUNE
    kinds[_tag(frame, "trial.number").notna()] = TRIAL
    return kinds


def config_labels(frame: pd.DataFrame) -> pd.Series:
    """``variant/runtime/precision`` plus every other identity param (and option) that varies across rows."""
    import pandas as pd

    options = sorted(column for column in frame.columns if str(column).startswith("option."))
    columns = [c for c in (*IDENTITY_PARAMS, *options) if c in frame.columns and c not in QUESTION_PARAMS]
    columns = [c for c in columns if c in CORE_PARAMS or frame[c].astype(str).nunique(dropna=False) > 1]
    if not columns:
        return frame["run_name"].astype(str)
    prefix = {
        "channels_last": "cl=",
        "num_threads": "threads=",
        "seq_len": "seq=",
        "prompt_len": "prompt=",
        "output_len": "out=",
    }

    def label(row: Any) -> str:
        parts = []
        for column in columns:
            value = row.get(column)
            if value is None or pd.isna(value):
                continue
            name = column.removeprefix("option.") + "=" if column.startswith("option.") else prefix.get(column, "")
            parts.append(f"{name}{value}")
        return "/".join(parts)

    return frame.apply(label, axis=1).astype(str)


def _hardware(row: Any) -> str:
    """The GPU for CUDA runs, else the CPU (``unknown`` when the run has no hardware tags)."""
    gpu = str(row.get("hw.gpu", "") or "")
    if row.get("device") == "cuda" and gpu not in _NO_GPU:
        return gpu
    cpu = row.get("hw.cpu")
    return str(cpu) if isinstance(cpu, str) and cpu else "unknown"


def _memory(row: Any) -> float:
    """GPU peak allocated for CUDA runs, else the CPU RSS peak (NaN when neither was measured)."""
    keys = (m.GPU_PEAK_ALLOCATED, m.CPU_RSS_PEAK) if row.get("device") == "cuda" else (m.CPU_RSS_PEAK,)
    for key in keys:
        value = row.get(key)
        if isinstance(value, (int, float)) and not math.isnan(value):
            return float(value)
    return math.nan


def _fill_hardware(cases: pd.DataFrame, hardware: pd.Series) -> pd.Series:
    """A case that failed before logging its machine runs where the other cases of its pipeline ran."""
    known = hardware[hardware != "unknown"]
    if known.empty or "parent_run_id" not in cases:
        return hardware
    by_parent = known.groupby(cases.loc[known.index, "parent_run_id"]).agg(lambda values: values.mode().iloc[0])
    filled = cases["parent_run_id"].map(by_parent)
    return hardware.where(hardware != "unknown", filled.fillna("unknown"))


def question_label(question: Sequence[str]) -> str:
    """``resnet50 · 64 px · digits``."""
    return " · ".join(question)


def pipeline_cases(frame: pd.DataFrame) -> pd.DataFrame:
    """Every pipeline case run, measured or not, with ``config``, ``hardware``, ``memory_mb``, ``question``.

    ``measured`` says whether the run has a p50 latency; failed and killed cases are kept so a report can say
    why they are not ranked. Labels are made per question, from what varies within it.
    """
    import pandas as pd

    extra = ["config", "hardware", "memory_mb", "question", "measured"]
    if frame.empty:
        return pd.DataFrame(columns=[*frame.columns, *extra])
    cases = frame[run_kinds(frame) == CASE].copy().reset_index(drop=True)
    if cases.empty:
        return pd.DataFrame(columns=[*frame.columns, *extra])
    for column in QUESTION_PARAMS:
        if column not in cases:
            cases[column] = None
    cases["question"] = [
        question_label(question_of(row["model"], row["image_size"], row["dataset"])) for _, row in cases.iterrows()
    ]
    cases["config"] = ""
    for _, index in cases.groupby("question").groups.items():
        cases.loc[index, "config"] = config_labels(cases.loc[index]).to_numpy()
    cases["hardware"] = _fill_hardware(cases, cases.apply(_hardware, axis=1).astype(str))
    cases["memory_mb"] = cases.apply(_memory, axis=1).astype(float)
    cases["measured"] = cases[m.LATENCY_P50].notna() if m.LATENCY_P50 in cases else False
    if "batch_size" not in cases:
        cases["batch_size"] = pd.Series([pd.NA] * len(cases), dtype="Int64")
    return cases


def case_runs(frame: pd.DataFrame) -> pd.DataFrame:
    """The pipeline case runs that measured something (they have a p50 latency); see :func:`pipeline_cases`."""
    cases = pipeline_cases(frame)
    return cases[cases["measured"].astype(bool)].reset_index(drop=True)


def failed_runs(frame: pd.DataFrame) -> pd.DataFrame:
    """Runs that ended FAILED or KILLED, with their status and error tags."""
    if frame.empty or "status" not in frame:
        return frame.iloc[:0]
    failed = frame[frame["status"].isin(("FAILED", "KILLED"))]
    columns = [c for c in ("run_name", "run_id", "status", "error.type", "error.message") if c in failed.columns]
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
    """``pareto``: within its question and machine, no valid case has both higher throughput and higher top-1
    (or, without accuracy, throughput). ``pareto_latency``: the same for p50 latency at the smallest batch size.

    Invalid measurements (tag ``valid`` = ``false``) are neither on a front nor allowed to push a case off it.
    """
    cases = cases.copy()
    cases["pareto"] = False
    cases["pareto_latency"] = False
    usable = cases[_tag(cases, m.VALID_TAG).astype(str).str.lower() != "false"]
    if m.THROUGHPUT not in cases:
        return cases
    for _, group in usable.groupby(["question", "hardware"]):
        has_accuracy = m.ACCURACY_TOP1 in group and group[m.ACCURACY_TOP1].notna().any()
        objectives = [(m.THROUGHPUT, True)] + ([(m.ACCURACY_TOP1, True)] if has_accuracy else [])
        cases.loc[group.index, "pareto"] = pareto_mask(group, objectives)
        if has_accuracy and group["batch_size"].notna().any():
            smallest = group[(group["batch_size"] == group["batch_size"].min()).fillna(False)]
            cases.loc[smallest.index, "pareto_latency"] = pareto_mask(
                smallest, [(m.LATENCY_P50, False), (m.ACCURACY_TOP1, True)]
            )
    return cases
