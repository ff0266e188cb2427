"""The synthetic model: its service time on a fake clock, and its spin on the real one."""

from __future__ import annotations

import time

import pytest

from mlperf_track.engine.clock import FakeClock
from mlperf_track.engine.load.synthetic import SHORT_CHUNK, SyntheticModel
from mlperf_track.errors import ConfigError


def test_a_fake_clock_advances_by_the_service_time_and_is_never_calibrated() -> None:
    clock = FakeClock()
    model = SyntheticModel(2.0, 0.5, clock=clock)
    model(4)
    assert clock.now_ns() == 4_000_000 and model.batch_sizes == [4]
    assert model.long_chunk_ns == 0  # no spin, no calibration


def test_the_spin_lasts_at_least_the_service_time_in_long_gil_free_steps() -> None:
    model = SyntheticModel(5.0)
    assert model.long_chunk_ns > 0 and model._long_work.size >= SHORT_CHUNK
    for _ in range(5):
        before = time.perf_counter_ns()
        model(1)
        assert time.perf_counter_ns() - before >= 5_000_000


def test_failures_and_bad_times() -> None:
    model = SyntheticModel(0.0, clock=FakeClock(), fail_every=2)
    model(1)
    with pytest.raises(RuntimeError, match="call 2"):
        model(1)
    with pytest.raises(ConfigError, match="service time"):
        SyntheticModel(-1.0)
