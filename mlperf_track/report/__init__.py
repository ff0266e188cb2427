"""Reports, regression checks and exports over the runs that mlperf_track logged to MLflow.

- :func:`report_experiment` / :func:`build_report`: Markdown, HTML and JSON reports with seaborn figures.
- :func:`compare_samples`, :func:`parse_thresholds`, :func:`check_regression`: is a candidate slower?
- :func:`export_experiment`: runs, params, metrics, tags and raw samples as DuckDB or Parquet tables.

Submodules import pandas, seaborn, scipy and mlflow on first use.
"""

from __future__ import annotations

from mlperf_track.report.build import Report, build_report, report_experiment, write_report
from mlperf_track.report.compare import (
    Comparison,
    Threshold,
    check_regression,
    check_regressions,
    compare_samples,
    parse_thresholds,
)
from mlperf_track.report.export import collect_tables, export_experiment
from mlperf_track.report.runs import load_runs, runs_frame
from mlperf_track.report.samples import Samples, load_samples

__all__ = [
    "Comparison",
    "Report",
    "Samples",
    "Threshold",
    "build_report",
    "check_regression",
    "check_regressions",
    "collect_tables",
    "compare_samples",
    "export_experiment",
    "load_runs",
    "load_samples",
    "parse_thresholds",
    "report_experiment",
    "runs_frame",
    "write_report",
]
