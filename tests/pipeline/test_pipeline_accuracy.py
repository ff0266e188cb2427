"""The pipeline's accuracy: ``epochs`` auto by default, paired intervals and verdicts on every case, and a gain
reported with what it means."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlperf_track import metrics as m
from mlperf_track.errors import ConfigError
from mlperf_track.pipeline import PipelineConfig, run_pipeline
from mlperf_track.pipeline.defaults import auto_defaults
from mlperf_track.spec import TimingConfig

FAST = TimingConfig(warmup_iters=1, warmup_s=0.0, min_iters=3, max_iters=20, max_time_s=0.1, target_rel_ci=0.5)


def test_epochs_default_to_auto_everywhere() -> None:
    assert PipelineConfig(model="tinycnn").epochs is None
    for device in ("cpu", "cuda"):
        default = auto_defaults(device)["epochs"]
        assert default == "auto" and str(default) == "auto"  # survives a round trip through a flag's text
        assert PipelineConfig(model="tinycnn", epochs=default).epochs is None
    assert PipelineConfig(model="tinycnn", epochs=" Auto ").epochs is None  # type: ignore[arg-type]
    assert PipelineConfig(model="tinycnn", epochs=3).epochs == 3


@pytest.mark.parametrize("epochs", [-1, 1.5, True, "None", "3"])
def test_bad_epochs_name_the_field_and_auto(epochs: object) -> None:
    with pytest.raises(ConfigError, match="epochs") as caught:
        PipelineConfig(model="tinycnn", epochs=epochs)  # type: ignore[arg-type]
    assert "auto" in str(caught.value)


def test_a_gain_over_an_untrained_baseline_is_flagged_not_credited(tmp_path: Path) -> None:
    # An untrained baseline (epochs=0) guesses; a variant that trains beats it by far: a significant gain,
    # which must come with the warning that says what it means.
    config = PipelineConfig(
        model="tinycnn",
        device="cpu",
        dataset="digits",
        image_size=8,
        epochs=0,
        variants=("pruned_unstructured",),
        options=(("fine_tune_epochs", "3"),),
        batch_sizes=(4,),
        timing=FAST,
        cache_dir=tmp_path / "cache",
        output_dir=tmp_path / "out",
    )
    results = {result.case.variant: result for result in run_pipeline(config).results}
    pruned, baseline = results["pruned_unstructured"], results["baseline"]
    assert pruned.metrics[m.ACCURACY_TOP1_DELTA_CI_LOW] > 0
    assert pruned.tags[m.ACCURACY_VERDICT_TAG] == m.VERDICT_GAIN
    warning = pruned.tags[m.ACCURACY_WARNING_TAG]
    assert "not trained" in warning and "not a win" in warning and "3 more training epoch(s)" in warning
    assert baseline.tags[m.ACCURACY_VERDICT_TAG] == m.VERDICT_NO_CHANGE
    assert m.ACCURACY_WARNING_TAG not in baseline.tags
    assert baseline.metrics[m.ACCURACY_TOP1_DELTA_CI_LOW] == 0.0 == baseline.metrics[m.ACCURACY_TOP1_DELTA_CI_HIGH]
