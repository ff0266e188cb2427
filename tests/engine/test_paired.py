"""The paired intervals: known values, the verdict's three outcomes, coverage and false verdicts by simulation."""

from __future__ import annotations

import math

import pytest
import torch

from mlperf_track import metrics
from mlperf_track.engine.paired import (
    bonett_price_interval,
    compare_paired,
    delta_interval,
    delta_verdict,
    mcnemar_interval,
    wilson_interval,
)
from mlperf_track.errors import DataError


def test_known_values() -> None:
    # Clopper-Pearson for 0 of 10: upper bound 1 - 0.025 ** (1/10); the delta is (10/360)(2 pi - 1).
    low, high = mcnemar_interval(10, 0, 360)
    assert low == pytest.approx(-10 / 360)
    assert high == pytest.approx(10 / 360 * (2 * (1 - 0.025 ** (1 / 10)) - 1))
    # Bonett-Price by hand: (b+1)/(n+2), (c+1)/(n+2), Wald on n+2.
    p12, p21 = 11 / 362, 1 / 362
    half = 1.959964 * math.sqrt((p12 + p21 - (p21 - p12) ** 2) / 362)
    assert bonett_price_interval(10, 0, 360) == pytest.approx((p21 - p12 - half, p21 - p12 + half), abs=1e-6)
    # The reported interval is the union of the two: here Bonett-Price's on both sides.
    assert delta_interval(10, 0, 360) == pytest.approx((p21 - p12 - half, p21 - p12 + half), abs=1e-6)
    exact, adjusted = mcnemar_interval(3, 9, 200), bonett_price_interval(3, 9, 200)
    assert delta_interval(3, 9, 200) == (min(exact[0], adjusted[0]), max(exact[1], adjusted[1]))
    # Wilson at 360/360: lower bound n / (n + z^2).
    assert wilson_interval(360, 360) == pytest.approx((360 / (360 + 1.959964**2), 1.0), abs=1e-6)


def test_no_discordant_image_gives_a_degenerate_interval() -> None:
    assert delta_interval(0, 0, 359) == (0.0, 0.0)
    assert delta_verdict((0.0, 0.0)) == metrics.VERDICT_NO_CHANGE


@pytest.mark.parametrize(
    ("interval", "verdict"),
    [
        ((-0.02, 0.01), metrics.VERDICT_NO_CHANGE),
        ((-0.02, 0.0), metrics.VERDICT_NO_CHANGE),  # a bound on 0 still contains 0
        ((0.0, 0.03), metrics.VERDICT_NO_CHANGE),
        ((-0.05, -0.001), metrics.VERDICT_LOSS),
        ((0.001, 0.05), metrics.VERDICT_GAIN),
    ],
)
def test_verdict_calls_nothing_whose_interval_contains_zero(interval: tuple[float, float], verdict: str) -> None:
    assert delta_verdict(interval) == verdict


def test_intervals_are_mirror_images_and_stay_in_range() -> None:
    low, high = delta_interval(7, 2, 100)
    mirrored = delta_interval(2, 7, 100)
    assert mirrored == pytest.approx((-high, -low))
    assert delta_interval(50, 0, 50)[0] >= -1.0 and delta_interval(0, 50, 50)[1] <= 1.0
    assert wilson_interval(0, 20)[0] >= 0 and wilson_interval(20, 20)[1] <= 1


def test_few_lopsided_disagreements_are_not_a_verdict() -> None:
    """4 lost, 0 gained: an exact McNemar p of 0.125, so no verdict (a paired bootstrap would say loss)."""
    assert delta_verdict(delta_interval(4, 0, 359)) == metrics.VERDICT_NO_CHANGE
    assert delta_verdict(delta_interval(12, 0, 359)) == metrics.VERDICT_LOSS
    assert delta_verdict(delta_interval(0, 12, 359)) == metrics.VERDICT_GAIN


def test_compare_paired_counts_discordant_images() -> None:
    reference = torch.tensor([True, True, False, False, True])
    candidate = torch.tensor([True, False, True, False, True])
    comparison = compare_paired(candidate, reference, torch.tensor([0, 1, 2, 3, 4]), torch.tensor([0, 2, 1, 3, 4]))
    assert (comparison.reference_only, comparison.candidate_only) == (1, 1)
    assert comparison.delta == 0.0 and comparison.agreement == pytest.approx(0.6)
    assert comparison.verdict == metrics.VERDICT_NO_CHANGE
    assert set(comparison.metrics()) == {
        metrics.ACCURACY_TOP1_DELTA_CI_LOW,
        metrics.ACCURACY_TOP1_DELTA_CI_HIGH,
        metrics.ACCURACY_AGREEMENT_CI_LOW,
        metrics.ACCURACY_AGREEMENT_CI_HIGH,
    }
    assert comparison.tags()[metrics.ACCURACY_VERDICT_TAG] == metrics.VERDICT_NO_CHANGE
    with pytest.raises(DataError, match="same non-empty set"):
        compare_paired(candidate, reference[:4], torch.zeros(5), torch.zeros(5))


def _simulate(p_reference_only: float, p_candidate_only: float, samples: int, runs: int) -> tuple[float, float]:
    """Coverage of the true delta, and the share of runs with a loss or gain verdict."""
    generator = torch.Generator().manual_seed(0)
    truth = p_candidate_only - p_reference_only
    covered = verdicts = 0
    for _ in range(runs):
        draw = torch.rand(samples, generator=generator)
        reference_only = int((draw < p_reference_only).sum())
        candidate_only = int(((draw >= p_reference_only) & (draw < p_reference_only + p_candidate_only)).sum())
        low, high = delta_interval(reference_only, candidate_only, samples)
        covered += low <= truth <= high
        verdicts += delta_verdict((low, high)) != metrics.VERDICT_NO_CHANGE
    return covered / runs, verdicts / runs


def test_the_delta_interval_covers_the_truth_and_rarely_calls_noise_a_change() -> None:
    coverage, _ = _simulate(0.04, 0.01, samples=360, runs=600)
    assert coverage >= 0.92  # nominal 0.95; 0.955 over 3000 runs
    coverage, false_verdicts = _simulate(0.02, 0.02, samples=360, runs=600)
    assert coverage >= 0.92 and false_verdicts <= 0.05
