"""The real thing on the CPU: 12 trials of resnet18 at 64 px measured by the pipeline session, logged to MLflow."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from tuning_fakes import runs_of

from mlperf_track import metrics as m
from mlperf_track.spec import TimingConfig
from mlperf_track.tuning.config import TuneConfig
from mlperf_track.tuning.objective import MEMORY, is_feasible
from mlperf_track.tuning.runner import run_tune
from mlperf_track.tuning.tracking import FOUND, RESULT_TAG

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LIMIT_MB = 6000.0
#: Short, permissive timing: the point is the tuner on the real session, not precise numbers, and a measurement
#: must stay valid on a loaded 2-core machine (enough calls for a median CI; wide CI, spread and drift allowed).
TIMING = TimingConfig(
    warmup_iters=1,
    warmup_s=0.0,
    min_iters=8,
    max_iters=40,
    max_time_s=1.0,
    target_rel_ci=0.9,
    max_cv=10.0,
    stability_tolerance=0.9,
    throughput_time_s=0.2,
)


def test_cpu_tune_of_resnet18_logs_12_trials_and_a_best_configuration_within_the_memory_limit(
    tracking: str, tmp_path: Path
) -> None:
    config = TuneConfig.create(
        "resnet18",
        device="cpu",
        image_size=64,
        n_trials=12,
        memory_limit_mb=LIMIT_MB,
        max_accuracy_drop=None,  # synthetic data: no accuracy, so no accuracy limit
        batch_sizes="max:32",
        runtimes=("eager",),
        precisions=("fp32", "bf16"),
        dataset="synthetic",
        storage="none",
        warm_start="none",
        timing=TIMING,
        output_dir=tmp_path / "out",
    )
    outcome = run_tune(config)
    runs = runs_of(tracking)
    parents = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    trials = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(trials) == 12
    assert sorted(int(run.data.tags["trial.number"]) for run in trials) == list(range(12))
    measured = [run for run in trials if run.data.tags[m.TRIAL_OUTCOME_TAG] == "measured"]
    pruned = [run for run in trials if run.data.tags[m.TRIAL_OUTCOME_TAG] == "pruned"]
    assert measured and len(measured) + len(pruned) == 12  # 12 distinct points: none reused, none failed
    assert all(m.CPU_RSS_PEAK in run.data.metrics and m.THROUGHPUT in run.data.metrics for run in measured)
    assert all(m.SHORT_THROUGHPUT in run.data.metrics and m.THROUGHPUT not in run.data.metrics for run in pruned)
    assert all(run.data.params["runtime"] == "eager" and run.data.params["image_size"] == "64" for run in measured)
    assert all(run.data.metrics[m.TRIAL_PREPARE_S] >= 0 and run.data.metrics[m.TRIAL_MEASURE_S] > 0 for run in trials)
    best = outcome.summary.best[0]
    assert best.user_attrs["metrics"][m.CPU_RSS_PEAK] <= LIMIT_MB
    assert best.constraints[MEMORY] <= 0
    assert parent.data.tags[RESULT_TAG] == FOUND
    assert parent.data.metrics[f"best/{m.CPU_RSS_PEAK}"] <= LIMIT_MB
    assert parent.data.params["best.precision"] in ("fp32", "bf16")
    assert parent.data.metrics[f"best/{m.THROUGHPUT}"] == pytest.approx(best.values[0])
    assert best.values[0] == max(trial.values[0] for trial in outcome.study.trials if is_feasible(trial))
    artifacts = {item.path for item in mlflow.MlflowClient().list_artifacts(parent.info.run_id)}
    assert {"trials.json", "search_space.json"} <= artifacts
