"""An absent source is said once per process at INFO, while every reading keeps its notes."""

from __future__ import annotations

import logging

import pytest

from mlperf_track.engine.monitors.base import Monitor, MonitorReading, Window


class _Unplugged(Monitor):
    name = "unplugged_test_source"
    metric_keys = ("power/unplugged_w",)

    def start(self) -> None:
        return None

    def stop(self, window: Window) -> MonitorReading:
        return self.absent("no such sensor here")


def test_an_absent_source_is_logged_once_at_info_and_noted_on_every_reading(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="mlperf_track.engine.monitors.base")
    readings = [_Unplugged().stop(Window(seconds=1.0, samples=8)) for _ in range(3)]
    levels = [record.levelno for record in caplog.records if "unplugged_test_source" in record.getMessage()]
    assert levels == [logging.INFO, logging.DEBUG, logging.DEBUG]
    assert all(reading.notes == {"power/unplugged_w": "no such sensor here"} for reading in readings)
    other = _Unplugged().absent("another reason")
    assert other.notes == {"power/unplugged_w": "another reason"}
    assert caplog.records[-1].levelno == logging.INFO  # a new reason is news
