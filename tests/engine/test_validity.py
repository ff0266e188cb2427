"""The validity verdict: each rule on data made to break it (and only it), and messages that never contradict."""

from __future__ import annotations

import numpy as np
import pytest

from mlperf_track.engine.validity import invalid_reasons, stability_reason, window_medians
from mlperf_track.spec import TimingConfig

LOOSE = TimingConfig(min_iters=10, max_iters=100_000, target_rel_ci=0.05, max_cv=0.5, stability_tolerance=0.1)


def _steady(n: int = 300, level: float = 10.0, noise: float = 0.05, seed: int = 0) -> list[float]:
    return (level + np.random.default_rng(seed).normal(0, noise, n)).tolist()


def test_clean_samples_are_valid() -> None:
    assert invalid_reasons(_steady(), LOOSE) == ()


def test_too_few_for_a_ci_says_so_without_inf() -> None:
    reasons = invalid_reasons([10.0, 10.1, 9.9], LOOSE)
    assert reasons == ("too few samples for a confidence interval of the median (n=3)",)


def test_fewer_than_min_iters() -> None:
    reasons = invalid_reasons(_steady(8), LOOSE)
    assert reasons == ("too few samples: 8 timed calls (min_iters=10)",)


def test_ci_wider_than_target_names_both_numbers_and_the_stop() -> None:
    samples = np.random.default_rng(1).lognormal(2.0, 0.3, 40).tolist()
    (reason,) = [r for r in invalid_reasons(samples, LOOSE, stop_reason="max_time") if "CI" in r]
    assert reason.startswith("stopped at max_time with the median's 95% CI ")
    width = float(reason.split("CI ")[1].split("%")[0]) / 100
    assert width > LOOSE.target_rel_ci and "above the 5.00% target" in reason


def test_ci_within_target_is_never_reported_even_at_a_cap() -> None:
    assert invalid_reasons(_steady(), LOOSE, stop_reason="max_time") == ()


def test_spread_above_max_cv() -> None:
    rng = np.random.default_rng(2)
    samples = [float(x) for x in rng.permutation([10.0] * 290 + [500.0] * 10)]  # rare huge stalls: CV ~ 1.6
    reasons = invalid_reasons(samples, LOOSE)
    assert len(reasons) == 1 and reasons[0].startswith("spread too high: coefficient of variation")


def test_drift_breaks_the_stability_rule() -> None:
    samples = _steady(150, 10.0) + _steady(150, 12.0, seed=1)  # the machine slowed by 20% half way
    reasons = invalid_reasons(samples, LOOSE.__class__(**{**LOOSE.to_dict(), "target_rel_ci": 0.5}))
    assert len(reasons) == 1 and reasons[0].startswith("not stable: the medians of 3 consecutive windows")
    assert "(max/min; tolerance 10%; Kruskal-Wallis p=" in reasons[0]


def test_stability_tolerance_is_the_threshold() -> None:
    samples = _steady(150, 10.0) + _steady(150, 10.6, seed=1)  # a 6% step between the first and last window
    assert stability_reason(samples, LOOSE) is None
    strict = TimingConfig(stability_tolerance=0.05)
    assert stability_reason(samples, strict) is not None


def test_window_medians_split_by_call_order() -> None:
    assert window_medians([1.0] * 3 + [2.0] * 3 + [3.0] * 3, 3) == [1.0, 2.0, 3.0]
    assert window_medians([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], 3) is None  # fewer than 3 per window


def test_small_windows_of_a_steady_process_are_not_called_unstable() -> None:
    # A steady process with a 15% CV: medians of 4-sample windows differ by more than 10% by chance.
    rng = np.random.default_rng(5)
    false_alarms = sum(
        stability_reason(rng.lognormal(np.log(10.0), 0.15, 12).tolist(), LOOSE) is not None for _ in range(200)
    )
    assert false_alarms <= 4  # about 1% at alpha 0.01


def test_minimum_measured_duration() -> None:
    timing = TimingConfig(min_iters=10, min_time_s=1.0, max_time_s=5.0, target_rel_ci=0.05)
    short = _steady(50)  # 50 x 10 ms = 0.5 s
    reasons = invalid_reasons(short, timing, stop_reason="max_iters")
    assert reasons == (
        "stopped at max_iters after 0.5 s measured, under the minimum measured duration of 1 s; "
        "raise max_iters (10000)",
    )
    assert invalid_reasons(_steady(101), timing) == ()


def test_a_time_cap_at_or_below_the_minimum_is_the_users_choice() -> None:
    timing = TimingConfig(min_iters=10, min_time_s=1.0, max_time_s=0.3, target_rel_ci=0.05)
    assert invalid_reasons(_steady(30), timing) == ()


@pytest.mark.parametrize("seed", range(5))
def test_reasons_are_recomputed_from_data_alone(seed: int) -> None:
    samples = np.random.default_rng(seed).lognormal(2.0, 0.5, 60).tolist()
    assert invalid_reasons(samples, LOOSE) == invalid_reasons(list(samples), LOOSE)
