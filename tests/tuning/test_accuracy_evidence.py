"""The accuracy chance of unmeasured points, from the drops measured at their neighbours."""

from __future__ import annotations

import math

import pytest

from mlperf_track.tuning.accuracy_evidence import UNSEEN_PRIOR, AccuracyEvidence
from mlperf_track.tuning.space import Choice, TrialPoint
from mlperf_track.tuning.surrogate import FeatureMap, LogScale, features

PRUNED_EAGER = Choice("pruned", "eager", "fp32")
PRUNED_ORT = Choice("pruned", "onnxruntime", "fp32")
PRUNED_BF16 = Choice("pruned", "eager", "bf16")


def test_nothing_measured_gives_the_prior_and_certainty_for_the_fp32_baseline() -> None:
    evidence = AccuracyEvidence()
    assert not evidence
    assert evidence.chance(Choice("baseline", "eager", "fp32")) == 1.0
    assert evidence.chance(Choice("baseline", "eager", "bf16")) == UNSEEN_PRIOR
    assert evidence.chance(PRUNED_EAGER) == UNSEEN_PRIOR


@pytest.mark.parametrize(("excess", "expected"), [(0.02, 0.0), (-0.005, 1.0), (0.0, 1.0)])
def test_a_measured_point_is_decided_by_its_own_outcome(excess: float, expected: float) -> None:
    assert AccuracyEvidence.of([(PRUNED_EAGER, excess)]).chance(PRUNED_EAGER) == expected


def test_a_variant_far_outside_the_limit_is_given_up_on_other_runtimes_and_precisions() -> None:
    evidence = AccuracyEvidence.of([(PRUNED_EAGER, 0.05)])  # lost 6 points under a 1-point limit
    assert evidence.chance(PRUNED_ORT) < 0.01
    assert evidence.chance(PRUNED_BF16) < 0.01


def test_a_near_miss_leaves_a_real_chance_and_another_precision_a_wider_one() -> None:
    evidence = AccuracyEvidence.of([(PRUNED_EAGER, 0.004)])
    same_precision, other_precision = evidence.chance(PRUNED_ORT), evidence.chance(PRUNED_BF16)
    assert 0.2 < same_precision < 0.5
    assert same_precision < other_precision < 0.5


def test_a_point_comfortably_inside_makes_its_neighbours_likely_to_pass() -> None:
    evidence = AccuracyEvidence.of([(PRUNED_EAGER, -0.01)])
    assert evidence.chance(PRUNED_ORT) > 0.7


def test_a_composition_inherits_the_worst_measured_step() -> None:
    composed = Choice("pruned+int8", "onnxruntime", "int8")
    bad_step = AccuracyEvidence.of([(PRUNED_EAGER, 0.05), (Choice("int8", "onnxruntime", "int8"), -0.01)])
    assert bad_step.chance(composed) < 0.1
    good_steps = AccuracyEvidence.of([(PRUNED_EAGER, -0.01), (Choice("int8", "onnxruntime", "int8"), -0.01)])
    assert good_steps.chance(composed) > 0.5


def test_a_bad_composition_does_not_condemn_its_steps() -> None:
    evidence = AccuracyEvidence.of([(Choice("pruned+int8", "onnxruntime", "int8"), 0.05)])
    assert evidence.chance(Choice("int8", "onnxruntime", "int8")) == UNSEEN_PRIOR


def test_batch_features_span_minus_one_to_one_over_the_searched_range() -> None:
    scale = LogScale.of([1, 8, 64])
    assert (scale(1), scale(8), scale(64)) == (-1.0, 0.0, 1.0)
    points = [TrialPoint(Choice("baseline", "eager", "fp32"), size) for size in (1, 8, 64)]
    matrix = FeatureMap(points).matrix(points)
    assert math.isclose(abs(matrix).max(), 1.0)
    assert features(points[2], LogScale.of([1, 64]))["log_batch^2"] == 1.0


def test_one_batch_size_is_not_divided_by_zero() -> None:
    assert LogScale.of([32])(32) == 0.0
