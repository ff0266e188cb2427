"""Reports, regression checks and exports over the runs that mlperf_track logged to MLflow.

- :func:`report_experiment` / :func:`build_report`: Markdown, HTML and JSON reports with seaborn figures, one
  section per question (model, image size, dataset).
- :func:`judge`, :func:`rank`, :func:`recommend`: the one eligibility rule (finished, valid, within the
  accuracy, memory and latency :class:`Limits`) and the answer in words, shared by the parent run, the
  console, the report and the tuner.
- :func:`compare_samples`, :func:`parse_thresholds`, :func:`check_regression`: is a candidate slower, beyond the
  between-run spread that :func:`record_noise_floor` records (:class:`RecordedFloor`, :func:`load_noise_floor`)?
- :func:`export_experiment`: runs, params, metrics, tags and raw samples as DuckDB or Parquet tables.

Submodules import pandas, seaborn, scipy and mlflow on first use.
"""

from __future__ import annotations

from mlperf_track.engine.eligibility import Candidate, Limits, Verdict, judge
from mlperf_track.engine.ranking import Ranking, rank
from mlperf_track.report.build import Report, build_report, experiment_report, report_experiment, write_report
from mlperf_track.report.compare import (
    Comparison,
    Threshold,
    check_regression,
    check_regressions,
    compare_samples,
    parse_thresholds,
)
from mlperf_track.report.export import collect_tables, export_experiment
from mlperf_track.report.noise import RecordedFloor, load_noise_floor
from mlperf_track.report.noise_floor import record_noise_floor
from mlperf_track.report.recommend import Recommendation, recommend
from mlperf_track.report.runs import load_runs, resolve_experiments, resolve_run, runs_frame
from mlperf_track.report.samples import Samples, load_samples

__all__ = [
    "Candidate",
    "Comparison",
    "Limits",
    "Ranking",
    "Recommendation",
    "RecordedFloor",
    "Report",
    "Samples",
    "Threshold",
    "Verdict",
    "build_report",
    "check_regression",
    "check_regressions",
    "collect_tables",
    "compare_samples",
    "experiment_report",
    "export_experiment",
    "judge",
    "load_noise_floor",
    "load_runs",
    "load_samples",
    "parse_thresholds",
    "rank",
    "recommend",
    "record_noise_floor",
    "report_experiment",
    "resolve_experiments",
    "resolve_run",
    "runs_frame",
    "write_report",
]
