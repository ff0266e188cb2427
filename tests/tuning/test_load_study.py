"""``tune --objective max_qps``: valid deployment combinations, a named objective, trials logged, bad input."""

from __future__ import annotations

import optuna
import pytest

from mlperf_track import metrics as m
from mlperf_track.cli import main
from mlperf_track.engine.load.config import SERVER, DeploymentConfig, LoadConfig
from mlperf_track.engine.load.search import SearchConfig
from mlperf_track.pipeline.load_sweep import LoadListener, LoadPlan, LoadSweepOutcome, run_load_plan
from mlperf_track.pipeline.load_target import SyntheticTarget
from mlperf_track.spec import CaseSpec
from mlperf_track.tuning.config import SearchSettings, TuneConfig
from mlperf_track.tuning.load_study import batching_keys, deployment_of, run_max_qps_study

TINY = ["--model", "tinycnn", "--image-size", "16", "--device", "cpu", "--runtimes", "eager", "--precisions", "fp32",
        "--batch-sizes", "1", "--variants", "none", "--dataset", "synthetic", "--accuracy", "false",
        "--storage", "none"]  # fmt: skip


def test_a_queue_delay_is_searched_only_with_batching() -> None:
    settings = SearchSettings(max_batch_size=(1, 4, 8), max_queue_delay_ms=(0.0, 2.0))
    keys = batching_keys(settings)
    assert keys == [
        "max_batch_size=1,max_queue_delay_ms=0",
        "max_batch_size=4,max_queue_delay_ms=0",
        "max_batch_size=4,max_queue_delay_ms=2",
        "max_batch_size=8,max_queue_delay_ms=0",
        "max_batch_size=8,max_queue_delay_ms=2",
    ]
    assert deployment_of(keys[2], 3) == DeploymentConfig(workers=3, max_batch_size=4, max_queue_delay_ms=2.0)


def _synthetic_measure(case: CaseSpec, deployment: DeploymentConfig, listener: LoadListener | None) -> LoadSweepOutcome:
    """The real load engine and max_qps search against a model with a known service time (0.4 ms + 0.05 ms/sample)."""
    config = LoadConfig(SERVER, target_qps=1.0, latency_bound_ms=20.0, min_duration_s=0.0, seed=0)
    plan = LoadPlan(SyntheticTarget(0.4, 0.05), config, deployment, search=SearchConfig(tolerance=0.2))
    return run_load_plan(plan, listener)


def test_max_qps_study_names_its_objective_and_logs_each_trial(tracking: str) -> None:
    import mlflow

    config = TuneConfig.create(
        "tinycnn", device="cpu", image_size=16, runtimes=("eager",), precisions=("fp32",), batch_sizes=(1,),
        dataset="synthetic", measure_accuracy=False, objective="max_qps", latency_bound_ms=20.0, min_duration=0.0,
        max_batch_size=(1, 8), max_queue_delay_ms=(0.0, 1.0), load_workers=(1,), n_trials=2, sampler="grid",
        storage=None, experiment=tracking, max_accuracy_drop=None,
    )  # fmt: skip
    outcome = run_max_qps_study(config, measure=_synthetic_measure)
    study = outcome.study
    assert study.metric_names == [m.BEST_MAX_QPS]
    assert len(study.trials) == 2
    valid = set(batching_keys(config.search))
    assert all(trial.params["batching"] in valid for trial in study.trials)
    done = [trial for trial in study.trials if trial.state == optuna.trial.TrialState.COMPLETE]
    assert done and all(trial.values[0] > 0 for trial in done)
    assert outcome.best is not None and outcome.best.values[0] == max(trial.values[0] for trial in done)
    parent = mlflow.get_run(outcome.run_id)
    assert parent.data.metrics[m.BEST_MAX_QPS] == pytest.approx(outcome.best.values[0])
    assert parent.data.tags["study.objective"] == "max_qps" and parent.info.status == "FINISHED"
    runs = mlflow.search_runs(experiment_names=[tracking], output_format="list")
    trials = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == outcome.run_id]
    assert sorted(run.info.run_name for run in trials) == ["trial 0", "trial 1"]
    probes = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == trials[0].info.run_id]
    assert probes and all(run.info.run_name.startswith("server@") for run in probes)


@pytest.mark.slow
def test_tune_max_qps_on_tinycnn_from_the_command_line(tracking: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["tune", *TINY, "--objective", "max_qps", "--latency-bound-ms", "100", "--min-duration", "0",
                 "--max-batch-size", "1,4", "--max-queue-delay-ms", "0", "--load-workers", "1", "--n-trials", "1",
                 "--experiment-name", tracking])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "max_qps" in printed and "best: " in printed


@pytest.mark.parametrize(
    ("arguments", "flag"),
    [
        ([], "--latency-bound-ms"),
        (["--latency-bound-ms", "-3"], "--latency-bound-ms"),
        (["--latency-bound-ms", "50", "--max-queue-delay-ms", "-1"], "--max-queue-delay-ms"),
        (["--latency-bound-ms", "50", "--max-batch-size", "0"], "--max-batch-size"),
        (["--latency-bound-ms", "50", "--load-workers", "1,,2"], "--load-workers"),
        (["--latency-bound-ms", "50", "--min-duration", "-1"], "--min-duration"),
    ],
)
def test_bad_max_qps_settings_fail_in_one_line(
    arguments: list[str], flag: str, tracking: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["tune", *TINY, "--objective", "max_qps", *arguments])
    err = capsys.readouterr().err.strip()
    assert code == 2 and flag in err and len(err.splitlines()) == 1, err
