"""Variants that retrain: early stopping on the holdout from the baseline, a logged budget, and what a gain means."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mlperf_track.errors import ConfigError
from mlperf_track.models.artifact import ModelArtifact
from mlperf_track.variants.base import VariantContext
from mlperf_track.variants.registry import get_variant
from mlperf_track.variants.retrain import (
    BASELINE_HOLDOUT_TAG,
    TRAIN_EPOCHS_TAG,
    TRAIN_PRECISION_TAG,
    TRAIN_RULE_TAG,
    TRAIN_SECONDS_TAG,
    TRAIN_STOP_TAG,
    VARIANT_STOPPING,
    gain_warning,
    option_epochs,
    recovery_target,
)


@pytest.mark.parametrize("name", ["pruned_unstructured", "pruned_structured"])
def test_auto_recovery_stops_on_the_holdout_and_logs_its_budget(
    name: str, tiny_baseline: ModelArtifact, make_context: Callable[..., VariantContext]
) -> None:
    artifact = get_variant(name).build(tiny_baseline, make_context(epochs=None))
    epochs = int(artifact.tags[TRAIN_EPOCHS_TAG])
    assert 1 <= epochs <= VARIANT_STOPPING.max_epochs
    assert float(artifact.tags[TRAIN_SECONDS_TAG]) > 0
    assert "stopped by" in artifact.tags[TRAIN_STOP_TAG] and "best epoch" in artifact.tags[TRAIN_STOP_TAG]
    assert artifact.tags[TRAIN_RULE_TAG] == VARIANT_STOPPING.describe()
    assert artifact.tags["prune.fine_tune"] == artifact.tags[TRAIN_STOP_TAG]
    assert artifact.tags[TRAIN_PRECISION_TAG] == "fp32"


def test_the_retraining_precision_comes_from_the_context_and_keys_the_cache(
    tiny_baseline: ModelArtifact, make_context: Callable[..., VariantContext]
) -> None:
    import dataclasses

    from mlperf_track.variants.variant_cache import variant_key

    context = dataclasses.replace(make_context(fine_tune_epochs="1"), train_precision="bf16")
    artifact = get_variant("pruned_structured").build(tiny_baseline, context)
    assert artifact.tags[TRAIN_PRECISION_TAG] == "bf16"
    assert "bf16 mixed precision" in artifact.tags[TRAIN_STOP_TAG]
    fp32 = dataclasses.replace(context, train_precision="fp32")
    assert variant_key("pruned_structured", tiny_baseline, context, {}) != variant_key(
        "pruned_structured", tiny_baseline, fp32, {}
    )


def test_fixed_recovery_epochs_are_logged_too(
    tiny_baseline: ModelArtifact, make_context: Callable[..., VariantContext]
) -> None:
    artifact = get_variant("pruned_structured").build(tiny_baseline, make_context(fine_tune_epochs="2"))
    assert artifact.tags[TRAIN_EPOCHS_TAG] == "2" and artifact.tags[TRAIN_RULE_TAG] == "fixed epochs"
    untrained = get_variant("pruned_structured").build(tiny_baseline, make_context(fine_tune_epochs="0"))
    assert TRAIN_EPOCHS_TAG not in untrained.tags  # nothing trained, no budget


def test_auto_distillation_stops_on_the_student_holdout_score(
    tiny_baseline: ModelArtifact, make_context: Callable[..., VariantContext]
) -> None:
    artifact = get_variant("distilled").build(tiny_baseline, make_context(epochs=None, student="tinycnn"))
    assert artifact.tags["distill.epochs"] == artifact.tags[TRAIN_EPOCHS_TAG]
    assert "early stopping" in artifact.tags[TRAIN_RULE_TAG]
    fixed = get_variant("distilled").build(
        tiny_baseline, make_context(epochs=None, student="tinycnn", distill_epochs="1")
    )
    assert fixed.tags[TRAIN_EPOCHS_TAG] == "1" and fixed.tags[TRAIN_RULE_TAG] == "fixed epochs"


def test_a_composition_adds_up_the_budgets_of_its_steps(
    tiny_baseline: ModelArtifact, make_context: Callable[..., VariantContext]
) -> None:
    from mlperf_track.variants.registry import resolve_variants

    (composed,) = resolve_variants(["pruned_unstructured+pruned_structured"], "cpu")
    context = make_context(fine_tune_epochs="1")
    artifact = composed.build(tiny_baseline, context)
    assert artifact.tags[TRAIN_EPOCHS_TAG] == "2"
    assert artifact.tags[TRAIN_STOP_TAG].count("stopped by") == 2


def test_option_epochs_reads_auto_and_integers() -> None:
    assert option_epochs({}, "distill_epochs", 3) == 3
    assert option_epochs({"distill_epochs": " Auto "}, "distill_epochs", 3) is None
    assert option_epochs({"distill_epochs": "4"}, "distill_epochs", None, minimum=1) == 4
    for bad in ("0", "x", "1.5"):
        with pytest.raises(ConfigError, match="distill_epochs") as caught:
            option_epochs({"distill_epochs": bad}, "distill_epochs", None, minimum=1)
        assert "auto" in str(caught.value)


def test_a_gain_is_explained_never_credited() -> None:
    trained = gain_warning({TRAIN_EPOCHS_TAG: "4"}, {"baseline.trained": "true", "baseline.converged": "true"})
    assert "4 more training epoch(s)" in trained and "not a win" in trained
    capped = gain_warning({TRAIN_EPOCHS_TAG: "4"}, {"baseline.converged": "false", "baseline.stop_reason": "time_cap"})
    assert "before it converged" in capped and "time_cap" in capped
    untrained = gain_warning({}, {"baseline.trained": "true", "baseline.converged": "true"})
    assert "without any training" in untrained and "chance" in untrained


@pytest.mark.parametrize(("name", "options"), [("pruned_unstructured", {}), ("distilled", {"student": "tinycnn"})])
def test_a_variant_stops_once_it_reaches_the_baseline_holdout_score(
    name: str,
    options: dict[str, str],
    tiny_baseline: ModelArtifact,
    make_context: Callable[..., VariantContext],
) -> None:
    import dataclasses

    # A baseline whose holdout top-1 any start reaches: the variant has nothing to recover, so it does not train.
    reachable = dataclasses.replace(tiny_baseline, tags={**tiny_baseline.tags, BASELINE_HOLDOUT_TAG: "0.0100"})
    artifact = get_variant(name).build(reachable, make_context(epochs=None, **options))
    assert artifact.tags[TRAIN_EPOCHS_TAG] == "0"
    assert "reaching the target holdout top-1 0.0100" in artifact.tags[TRAIN_STOP_TAG]
    assert "or once it reaches 0.0100" in artifact.tags[TRAIN_RULE_TAG]
    # Out of reach: the patience rule decides, as without a target.
    unreachable = dataclasses.replace(tiny_baseline, tags={**tiny_baseline.tags, BASELINE_HOLDOUT_TAG: "1.0000"})
    trained = get_variant(name).build(unreachable, make_context(epochs=None, **options))
    assert int(trained.tags[TRAIN_EPOCHS_TAG]) >= 1 and "reaching the target" not in trained.tags[TRAIN_STOP_TAG]


def test_the_recovery_target_is_the_baseline_holdout_score_when_there_is_one() -> None:
    assert recovery_target({BASELINE_HOLDOUT_TAG: "0.9722"}) == pytest.approx(0.9722)
    for missing in ({}, {BASELINE_HOLDOUT_TAG: ""}, {BASELINE_HOLDOUT_TAG: "nan"}, {BASELINE_HOLDOUT_TAG: "0"}):
        assert recovery_target(missing) is None
