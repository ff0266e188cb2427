"""The tuner's answer follows the eligibility rule (valid, accuracy, memory) and says it in words."""

from __future__ import annotations

import mlflow
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.trial import TrialState, create_trial
from tuning_fakes import FakeBackend, small_space

from mlperf_track import metrics as m
from mlperf_track.cli import main
from mlperf_track.engine.eligibility import Limits
from mlperf_track.tuning.config import TuneConfig
from mlperf_track.tuning.objective import TARGETS
from mlperf_track.tuning.results import summarize, trials_frame
from mlperf_track.tuning.runner import run_tune

FAKE = "tuning_fakes:make_fake_backend"
DISTRIBUTIONS = {
    "config": CategoricalDistribution(["baseline/eager/fp32", "quantized/eager/int8", "pruned/eager/fp32"]),
    "batch_size_index": IntDistribution(0, 3),
}


def _trial(config: str, throughput: float, delta: float, ci: tuple[float, float], **attrs: object) -> object:
    variant, runtime, precision = config.split("/")
    metrics = {
        m.THROUGHPUT: throughput,
        m.LATENCY_P50: 10.0,
        m.LATENCY_P99: 12.0,
        m.CPU_RSS_PEAK: 500.0,
        m.ACCURACY_TOP1_DELTA: delta,
        m.ACCURACY_TOP1_DELTA_CI_LOW: ci[0],
        m.ACCURACY_TOP1_DELTA_CI_HIGH: ci[1],
    }
    user_attrs = {"variant": variant, "runtime": runtime, "precision": precision, "batch_size": 8, "metrics": metrics}
    return create_trial(
        state=TrialState.COMPLETE,
        value=throughput,
        params={"config": config, "batch_size_index": 3},
        distributions=DISTRIBUTIONS,
        user_attrs={**user_attrs, **attrs},
    )


def _study() -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    study.add_trial(_trial("baseline/eager/fp32", 100.0, 0.0, (0.0, 0.0)))  # type: ignore[arg-type]
    invalid = {"valid": False, "invalid_reasons": ["the median's CI is 7% wide at the time cap"]}
    study.add_trial(_trial("quantized/eager/int8", 900.0, 0.0, (-0.01, 0.01), **invalid))  # type: ignore[arg-type]
    study.add_trial(_trial("pruned/eager/fp32", 600.0, -0.04, (-0.05, -0.03)))  # type: ignore[arg-type]
    study.add_trial(_trial("quantized/eager/int8", 400.0, -0.012, (-0.02, 0.001), valid="true"))  # type: ignore[arg-type]
    return study


def test_summary_best_skips_invalid_trials_and_accuracy_drops() -> None:
    study = _study()
    summary = summarize(study, (TARGETS["throughput"],), limits=Limits(max_accuracy_drop=0.01), device="cpu")
    assert [trial.number for trial in summary.best] == [3]  # -1.2 points, but the CI contains 0
    assert summary.n_feasible == 2 and summary.n_infeasible == 2
    answer = summary.recommendation("fakenet, 32 px, digits on cpu")
    assert answer.lines[0].startswith("fakenet, 32 px, digits on cpu: ship quantized/eager/int8 at batch 8: 400.0")
    assert "4.0x the fp32 eager baseline's throughput at batch 8" in answer.lines[0]
    assert answer.lines[-1] == "Not eligible: 1 invalid measurement, 1 accuracy drop (of 4 cases)."
    frame = trials_frame(study, (TARGETS["throughput"],), Limits(max_accuracy_drop=0.01))
    assert frame["eligible"].tolist() == [True, False, False, True]
    assert "invalid measurement" in frame.loc[1, "why_not"]


def test_without_limits_only_validity_counts_and_the_front_drops_invalid_trials() -> None:
    study = _study()
    summary = summarize(study, (TARGETS["throughput"],))
    assert [trial.number for trial in summary.best] == [2]
    multi = summarize(study, (TARGETS["throughput"], TARGETS["latency"]), limits=Limits(memory_limit_mb=450.0))
    assert multi.best == [] and not multi.found  # every trial is above the memory limit


def test_a_tune_run_ends_with_the_recommendation_on_the_console_and_the_parent(
    tracking: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["tune", "--model", "fakenet", "--device", "cpu", "--storage", "none", "--backend", FAKE]
    assert main([*base, "--n-trials", "4", "--batch-sizes", "1,2", "--memory-limit-mb", "8000"]) == 0
    out = capsys.readouterr().out
    assert "Recommendation" in out and "ship baseline/" in out and "peak memory <= 8,000 MB" in out
    (parent,) = [run for run in mlflow.search_runs(experiment_names=[tracking], output_format="list")
                 if "mlflow.parentRunId" not in run.data.tags]  # fmt: skip
    assert parent.data.tags["mlflow.note.content"].startswith("fakenet, 32 px, digits on cpu: ship ")
    assert parent.data.tags["tune.recommendation"] == parent.data.tags["mlflow.note.content"].splitlines()[0]


def test_the_tuner_logs_eligibility_in_the_trials_table(tracking: str) -> None:
    config = TuneConfig.create(
        "fakenet", device="cpu", n_trials=6, seed=0, storage="none", sampler="grid", max_accuracy_drop=0.01,
        short_time_s=None,  # every trial measured in full: the rule judges each
    )  # fmt: skip
    outcome = run_tune(config, FakeBackend(small_space((1, 4))))
    # bf16 loses 1.5 points in the fake (no CI): never the answer under a 1-point limit.
    assert all(trial.user_attrs["precision"] == "fp32" for trial in outcome.summary.best)
    bf16 = outcome.frame[outcome.frame["precision"] == "bf16"]
    assert not bf16.empty and not bf16["eligible"].any()
    assert bf16["why_not"].str.contains("exceeds the 1 point accuracy limit").all()


def test_without_limits_the_trials_constraints_decide_and_with_them_the_rule_does() -> None:
    study = optuna.create_study(direction="maximize")
    for config, throughput, delta, ci in (
        ("baseline/eager/fp32", 100.0, 0.0, (0.0, 0.0)),
        ("quantized/eager/int8", 400.0, -0.012, (-0.02, 0.001)),  # beyond 1 point, CI contains 0
    ):
        trial = study.ask(fixed_distributions=DISTRIBUTIONS)
        template = _trial(config, throughput, delta, ci)
        for key, value in template.user_attrs.items():  # type: ignore[attr-defined]
            trial.set_user_attr(key, value)
        trial.set_constraint("accuracy_drop", -delta - 0.01)  # the tuner's point-estimate constraint
        study.tell(trial, throughput)
    target = (TARGETS["throughput"],)
    only_constraints = summarize(study, target)
    assert [trial.number for trial in only_constraints.best] == [0]
    assert "constraint accuracy_drop violated" in only_constraints.ranking.excluded[0][1].text  # type: ignore[union-attr]
    with_limits = summarize(study, target, limits=Limits(max_accuracy_drop=0.01))
    assert [trial.number for trial in with_limits.best] == [1]  # no measurable change: the rule lets it in
