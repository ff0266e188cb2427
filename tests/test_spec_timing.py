"""TimingConfig: validation of every field, with one line naming the field, the value and what is allowed."""

from __future__ import annotations

import pytest

from mlperf_track.errors import ConfigError
from mlperf_track.spec import TimingConfig


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("max_cv", 0.0, "a positive number"),
        ("max_cv", 0.05, "a number >= cv_warning (0.1)"),
        ("stability_windows", 1, "an integer >= 2"),
        ("stability_windows", 2.5, "a positive integer"),
        ("stability_tolerance", 0.0, "a number in (0, 1)"),
        ("stability_tolerance", 1.5, "a number in (0, 1)"),
        ("throughput_method", "blocks", "auto, block, per_call"),
        ("block_s", -1.0, "a positive number"),
        ("throughput_time_s", 0, "a positive number"),
        ("min_time_s", -0.5, "a number >= 0"),
        ("min_time_s", True, "a number >= 0"),
        ("target_rel_ci", 1.0, "a number in (0, 1)"),
    ],
)
def test_bad_values_name_the_field(field: str, value: object, allowed: str) -> None:
    with pytest.raises(ConfigError) as info:
        TimingConfig(**{field: value})  # type: ignore[arg-type]
    assert f"invalid {field}=" in str(info.value) and allowed in str(info.value)


def test_defaults_and_effective_minimum() -> None:
    timing = TimingConfig(min_time_s=1.0, max_time_s=3.0)
    assert timing.effective_min_time_s == 1.0
    assert TimingConfig(min_time_s=1.0, max_time_s=0.3).effective_min_time_s == 0.3
    assert set(TimingConfig().to_dict()) >= {"max_cv", "stability_windows", "throughput_method", "block_s"}


def test_throughput_method_suggests_a_fix() -> None:
    with pytest.raises(ConfigError, match="did you mean block"):
        TimingConfig(throughput_method="blok")
