"""The tuner on a text decoder: trials at one prompt/output shape, tokens per second, a memory limit."""

from __future__ import annotations

from pathlib import Path

import pytest
from optuna.trial import TrialState
from tuning_fakes import runs_of

from mlperf_track import metrics as m
from mlperf_track.cli import main
from mlperf_track.spec import TimingConfig
from mlperf_track.tuning.config import TuneConfig
from mlperf_track.tuning.objective import MEMORY
from mlperf_track.tuning.runner import run_tune

pytest.importorskip("transformers")
pytestmark = [pytest.mark.integration]

#: Short and loose: the point is the tuner on the real text session, not precise numbers (a loaded machine can
#: still leave a trial invalid, so the test reads the memory constraint of every trial, not the best one).
TIMING = TimingConfig(warmup_iters=1, warmup_s=0.0, min_iters=8, max_iters=40, max_time_s=1.5, target_rel_ci=0.9)


def test_a_decoder_study_measures_generation_at_the_given_shape_under_a_memory_limit(
    tracking: str, tmp_path: Path
) -> None:
    config = TuneConfig.create(
        "hf-config:gpt2-tiny",
        device="cpu",
        n_trials=3,
        memory_limit_mb=60000.0,
        max_accuracy_drop=None,  # synthetic data: no accuracy limit
        batch_sizes="1,2",
        runtimes=("eager",),
        precisions=("fp32",),
        dataset="synthetic",
        prompt_lens=(8,),
        output_lens=(4,),
        storage="none",
        warm_start="none",
        timing=TIMING,
        output_dir=tmp_path / "out",
    )
    outcome = run_tune(config)
    trials = [run for run in runs_of(tracking) if "mlflow.parentRunId" in run.data.tags]
    measured = [run for run in trials if run.data.tags[m.TRIAL_OUTCOME_TAG] == "measured"]
    assert measured and all(run.data.params["prompt_len"] == "8" for run in measured)
    assert all(run.data.params["output_len"] == "4" for run in measured)
    for run in measured:
        metrics = run.data.metrics
        assert metrics[m.TOKENS_PER_S] > 0 and metrics[m.TTFT_P50] > 0 and m.CPU_RSS_PEAK in metrics
    finished = [trial for trial in outcome.study.trials if trial.state == TrialState.COMPLETE]
    assert finished and all(trial.constraints[MEMORY] <= 0 for trial in finished)
    assert {trial.user_attrs["metrics"][m.TOKENS_PER_S] for trial in finished} >= {
        run.data.metrics[m.TOKENS_PER_S] for run in measured
    }


@pytest.mark.parametrize("flag", ["--seq-lens", "--prompt-lens", "--output-lens"])
def test_a_study_takes_one_length_per_text_option(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["tune", "--model", "hf-config:gpt2-tiny", flag, "8,16", "--storage", "none"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert f"{flag}='8,16'" in err and "one length" in err
