"""The accuracy chance of unmeasured points, from the drops measured at their neighbours."""

from __future__ import annotations

import math

import pytest

from mlperf_track.tuning.accuracy_evidence import AccuracyEvidence
from mlperf_track.tuning.space import Choice, TrialPoint
from mlperf_track.tuning.surrogate import FeatureMap, LogScale, features

PRUNED_EAGER = Choice("pruned", "eager", "fp32")
PRUNED_ORT = Choice("pruned", "onnxruntime", "fp32")
PRUNED_BF16 = Choice("pruned", "eager", "bf16")
INT8 = Choice("int8", "onnxruntime", "int8")
LIMIT = 0.01  # one point


def evidence(*measured: tuple[Choice, float]) -> AccuracyEvidence:
    """The model after points with the given top-1 drops (the constraint value is drop - limit)."""
    return AccuracyEvidence(LIMIT, [(choice, drop - LIMIT) for choice, drop in measured])


def test_nothing_measured_gives_the_prior_and_certainty_for_the_fp32_baseline() -> None:
    nothing = evidence()
    assert not nothing
    assert nothing.chance(Choice("baseline", "onnxruntime", "fp32")) == 1.0
    unseen_step, unseen_precision = nothing.chance(PRUNED_EAGER), nothing.chance(Choice("baseline", "eager", "bf16"))
    assert 0.5 < unseen_step < 0.75
    assert unseen_step < unseen_precision < 1.0  # a precision alone rarely moves top-1 by a point


@pytest.mark.parametrize(("drop", "expected"), [(0.03, 0.0), (0.005, 1.0), (LIMIT, 1.0)])
def test_a_measured_point_is_decided_by_its_own_outcome(drop: float, expected: float) -> None:
    assert evidence((PRUNED_EAGER, drop)).chance(PRUNED_EAGER) == expected


def test_a_variant_far_outside_the_limit_is_given_up_on_other_runtimes_and_precisions() -> None:
    lost_six_points = evidence((PRUNED_EAGER, 0.06))
    assert lost_six_points.chance(PRUNED_ORT) < 0.01
    assert lost_six_points.chance(PRUNED_BF16) < 0.05


def test_a_near_miss_leaves_a_real_chance_and_another_precision_a_wider_one() -> None:
    near_miss = evidence((PRUNED_EAGER, 0.014))
    same_precision, other_precision = near_miss.chance(PRUNED_ORT), near_miss.chance(PRUNED_BF16)
    assert 0.2 < same_precision < 0.5
    assert same_precision < other_precision < 0.5


def test_a_point_comfortably_inside_makes_its_neighbours_likely_to_pass() -> None:
    assert evidence((PRUNED_EAGER, 0.0)).chance(PRUNED_ORT) > 0.7


def test_a_composition_inherits_the_drop_of_its_steps() -> None:
    composed = Choice("pruned+int8", "onnxruntime", "int8")
    assert evidence((PRUNED_EAGER, 0.06), (INT8, 0.0)).chance(composed) < 0.05
    assert evidence((PRUNED_EAGER, 0.0), (INT8, 0.0)).chance(composed) > 0.5


def test_compositions_sharing_a_step_share_its_blame_once_the_other_step_is_cleared() -> None:
    model = evidence((Choice("pruned+int8", "onnxruntime", "int8"), 0.06), (INT8, 0.0))
    assert model.chance(PRUNED_EAGER) < 0.05
    assert model.chance(Choice("pruned+int4", "eager", "int8")) < 0.2  # int4 unseen: it might not lose more


def test_a_bad_composition_alone_splits_the_blame_between_its_steps() -> None:
    model = evidence((Choice("pruned+int8", "onnxruntime", "int8"), 0.06))
    unseen = evidence().chance(INT8)
    assert 0.0 < model.chance(INT8) < unseen
    assert model.chance(PRUNED_EAGER) < unseen


def test_batch_features_span_minus_one_to_one_over_the_searched_range() -> None:
    scale = LogScale.of([1, 8, 64])
    assert (scale(1), scale(8), scale(64)) == (-1.0, 0.0, 1.0)
    points = [TrialPoint(Choice("baseline", "eager", "fp32"), size) for size in (1, 8, 64)]
    matrix = FeatureMap(points).matrix(points)
    assert math.isclose(abs(matrix).max(), 1.0)
    assert features(points[2], LogScale.of([1, 64]))["log_batch^2"] == 1.0


def test_one_batch_size_is_not_divided_by_zero() -> None:
    assert LogScale.of([32])(32) == 0.0
