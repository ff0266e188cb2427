"""The converged baseline in MLflow: its training curve on the parent run, intervals and verdicts on the cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlperf_track import metrics as m
from mlperf_track.models.artifact import ModelArtifact
from mlperf_track.pipeline.config import PipelineConfig
from mlperf_track.spec import TimingConfig
from mlperf_track.tracking.listener import MlflowPipelineListener

FAST = TimingConfig(warmup_iters=1, warmup_s=0.0, min_iters=3, max_iters=20, max_time_s=0.1, target_rel_ci=0.5)


def _history(run_id: str, key: str) -> list[tuple[int, float]]:
    import mlflow

    return [(point.step, point.value) for point in mlflow.MlflowClient().get_metric_history(run_id, key)]


def test_the_listener_logs_the_curve_by_epoch_and_the_rest_as_tags(tracking: str, tiny_artifact: ModelArtifact) -> None:
    import mlflow

    curve = {m.BASELINE_TRAIN_LOSS: [[1, 0.9], [2, 0.4]], m.BASELINE_HOLDOUT_TOP1: [[0, 0.1], [1, 0.8], [2, 0.85]]}
    facts = {"baseline.converged": "true", "cached": "false", m.BASELINE_CURVE_FACT: json.dumps(curve)}
    with mlflow.start_run() as parent:
        MlflowPipelineListener(parent.info.run_id, log_model=False).on_baseline_ready(tiny_artifact, facts)
    run_id = parent.info.run_id
    assert _history(run_id, m.BASELINE_TRAIN_LOSS) == [(1, 0.9), (2, 0.4)]
    assert sorted(_history(run_id, m.BASELINE_HOLDOUT_TOP1)) == [(0, 0.1), (1, 0.8), (2, 0.85)]
    tags = mlflow.get_run(run_id).data.tags
    assert tags["baseline.converged"] == "true" and tags["baseline.cached"] == "false"  # never baseline.baseline.*
    assert m.BASELINE_CURVE_FACT not in tags


def test_an_unreadable_curve_is_skipped_with_a_warning(
    tracking: str, tiny_artifact: ModelArtifact, caplog: pytest.LogCaptureFixture
) -> None:
    import mlflow

    with mlflow.start_run() as parent:
        listener = MlflowPipelineListener(parent.info.run_id, log_model=False)
        listener.on_baseline_ready(tiny_artifact, {m.BASELINE_CURVE_FACT: "{not json", "trained": "true"})
    assert "curve is unreadable" in caplog.text
    assert mlflow.get_run(parent.info.run_id).data.tags["baseline.trained"] == "true"


def test_a_pipeline_with_auto_epochs_logs_the_curve_and_paired_intervals(tracking: str, tmp_path: Path) -> None:
    import mlflow

    from mlperf_track.tracking.pipeline_run import run_tracked_pipeline

    config = PipelineConfig(
        model="tinycnn",
        device="cpu",
        dataset="digits",
        image_size=8,
        epochs=None,  # auto: train until the holdout top-1 stops improving
        variants=("quantized_int8_dynamic",),
        batch_sizes=(4,),
        timing=FAST,
        cache_dir=tmp_path / "cache",
        output_dir=tmp_path / "out",
    )
    run_tracked_pipeline(config)
    runs = mlflow.MlflowClient().search_runs([tracking])
    (parent,) = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]

    tags = parent.data.tags
    epochs_run = int(tags["baseline.epochs_run"])
    assert tags["baseline.epochs"] == "auto" and tags["baseline.stop_reason"] in ("patience", "max_epochs", "time_cap")
    holdout = _history(parent.info.run_id, m.BASELINE_HOLDOUT_TOP1)
    assert sorted(step for step, _ in holdout) == list(range(epochs_run + 1))
    assert all(0.0 <= value <= 1.0 for _, value in holdout)
    assert len(_history(parent.info.run_id, m.BASELINE_TRAIN_LOSS)) == epochs_run
    assert len(_history(parent.info.run_id, m.BASELINE_HOLDOUT_LOSS)) == epochs_run + 1

    assert len(children) == 2
    for child in children:
        values = child.data.metrics
        low, high = values[m.ACCURACY_TOP1_DELTA_CI_LOW], values[m.ACCURACY_TOP1_DELTA_CI_HIGH]
        assert low <= values[m.ACCURACY_TOP1_DELTA] <= high
        assert (
            values[m.ACCURACY_AGREEMENT_CI_LOW] <= values[m.ACCURACY_AGREEMENT] <= values[m.ACCURACY_AGREEMENT_CI_HIGH]
        )
        assert child.data.tags[m.ACCURACY_VERDICT_TAG] in m.ACCURACY_VERDICTS
        assert "McNemar" in child.data.tags[m.ACCURACY_CI_METHOD_TAG]
    (baseline_case,) = [child for child in children if child.data.params["variant"] == "baseline"]
    # The eager fp32 baseline is its own reference: no image differs, a zero-width interval, no change.
    assert baseline_case.data.metrics[m.ACCURACY_TOP1_DELTA_CI_LOW] == 0.0
    assert baseline_case.data.metrics[m.ACCURACY_TOP1_DELTA_CI_HIGH] == 0.0
    assert baseline_case.data.tags[m.ACCURACY_VERDICT_TAG] == m.VERDICT_NO_CHANGE
