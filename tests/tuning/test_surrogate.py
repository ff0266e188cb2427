"""The cost-aware sampler's model of a study: what it believes before measuring, and what one measurement teaches."""

from __future__ import annotations

import numpy as np
import pytest

from mlperf_track.tuning.space import Choice, TrialPoint
from mlperf_track.tuning.surrogate import (
    CONFIGURATION,
    BayesianLinear,
    FeatureMap,
    features,
    prior_means,
)

EAGER = Choice("baseline", "eager", "fp32")
ORT = Choice("baseline", "onnxruntime", "fp32")
ORT_INT8 = Choice("quantized_int8_ort", "onnxruntime", "int8")
PRUNED_INT8 = Choice("pruned_structured+quantized_int8_ort", "onnxruntime", "int8")


def _points(choices: tuple[Choice, ...], sizes: tuple[int, ...] = (1, 8, 64)) -> list[TrialPoint]:
    return [TrialPoint(choice, size) for choice in choices for size in sizes]


def test_the_prior_expects_throughput_to_rise_with_the_batch_and_latency_to_fall_with_it() -> None:
    names = ["bias", "log_batch", "runtime=eager|log_batch", "precision=fp32"]
    throughput = prior_means(names, maximize=True)
    latency = prior_means(names, maximize=False)
    assert throughput[1] > 0 > latency[1]
    assert throughput[0] == throughput[2] == throughput[3] == 0.0  # only the main batch effect has a direction


def test_the_prior_expects_narrower_native_precisions_to_be_faster() -> None:
    names = [f"precision={name}" for name in ("fp32", "tf32", "bf16", "fp16", "int8", "fp8")]
    means = dict(zip(names, prior_means(names, maximize=True), strict=True))
    assert means["precision=fp32"] == 0.0
    assert 0 < means["precision=tf32"] < means["precision=bf16"] == means["precision=fp16"]
    assert means["precision=fp16"] < means["precision=int8"] == means["precision=fp8"]


def test_without_data_the_model_predicts_its_prior_and_data_overrule_it() -> None:
    points = _points((EAGER, ORT_INT8))
    feature_map = FeatureMap(points)
    matrix = feature_map.matrix(points)
    prior = BayesianLinear(feature_map.prior_sd, feature_map.prior_mean(maximize=True))
    mean, _ = prior.predict(matrix)
    assert mean[2] > mean[0] and mean[5] > mean[2]  # batch 64 over batch 1; int8 over fp32
    # measured: int8 is no faster, and batch size does not matter here
    rows = list(range(len(points)))
    fitted = BayesianLinear(feature_map.prior_sd, feature_map.prior_mean(maximize=True)).fit(
        matrix[rows], np.zeros(len(rows)), np.full(len(rows), 0.05)
    )
    mean, _ = fitted.predict(matrix)
    assert np.allclose(mean, 0.0, atol=0.05)


def test_a_configuration_far_from_the_additive_guess_carries_its_level_to_its_other_batch_sizes() -> None:
    """The effects of pruning and int8 measured apart do not add up for their composition: the composition's
    own feature lets one measurement of it at batch 8 move the prediction at batch 64 (without it, the model
    kept predicting the additive guess with confidence and never measured batch 64)."""
    points = _points((ORT, ORT_INT8, Choice("pruned_structured", "onnxruntime", "fp32"), PRUNED_INT8))
    feature_map = FeatureMap(points)
    assert f"{CONFIGURATION}{PRUNED_INT8.key}" in features(points[-1])
    matrix = feature_map.matrix(points)
    level = {ORT.key: 0.0, ORT_INT8.key: 0.7, "pruned_structured/onnxruntime/fp32": 0.5, PRUNED_INT8.key: 2.0}
    measured = [i for i, point in enumerate(points) if point.choice != PRUNED_INT8 or point.batch_size == 8]
    values = np.array([level[points[i].choice.key] + 0.1 * np.log2(points[i].batch_size) for i in measured])
    model = BayesianLinear(feature_map.prior_sd, feature_map.prior_mean(maximize=True)).fit(
        matrix[measured], values, np.full(len(measured), 0.05)
    )
    mean, _ = model.predict(matrix)
    at_64 = next(i for i, point in enumerate(points) if point.choice == PRUNED_INT8 and point.batch_size == 64)
    assert mean[at_64] == pytest.approx(2.0 + 0.6, abs=0.25)  # its own level, not 0.7 + 0.5 + 0.6


def test_a_measured_configurations_batch_size_1_promises_little_next_to_a_runtime_not_measured_yet() -> None:
    """The batch slope's prior is as wide as the tables showed it, not wider: with a slope as uncertain as a whole
    runtime, batch size 1 of the one measured configuration (a trial that costs nothing to prepare) drew the
    second trial of most replayed studies."""
    import math

    from mlperf_track.tuning.surrogate import expected_improvement

    points = _points((EAGER, ORT))
    feature_map = FeatureMap(points)
    model = BayesianLinear(feature_map.prior_sd, feature_map.prior_mean(maximize=True))
    best = math.log(1000.0)
    model.fit(feature_map.matrix([TrialPoint(EAGER, 64)]), np.array([best]), np.array([0.05]))
    mean, sd = model.predict(feature_map.matrix([TrialPoint(EAGER, 1), TrialPoint(ORT, 64)]))
    small_batch, other_runtime = expected_improvement(mean, sd, best)
    assert small_batch < 0.25 * other_runtime


def test_a_runtime_option_is_its_own_kind_of_feature() -> None:
    from mlperf_track.tuning.surrogate import PRIOR_SD, _kind

    assert _kind("runtime=onnxruntime|graph_optimization_level=basic") == "option"
    assert _kind("runtime=onnxruntime|precision=int8") == "interaction"
    assert _kind("runtime=onnxruntime|log_batch") == "interaction"
    assert PRIOR_SD["option"] > PRIOR_SD["interaction"]  # options moved throughput up to 2x on the tables
