"""Lazy package exports: a name imports its submodule on first use, unknown names fail as attributes do."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_a_name_is_imported_on_first_use_and_cached() -> None:
    code = (
        "import sys, mlperf_track.engine as e\n"
        "assert 'mlperf_track.engine.stats' not in sys.modules\n"
        "stats = e.LatencyStats\n"
        "assert 'mlperf_track.engine.stats' in sys.modules and vars(e)['LatencyStats'] is stats\n"
        "assert 'LatencyStats' in dir(e) and 'run_load' in dir(__import__('mlperf_track.engine.load').engine.load)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_an_unknown_name_raises_attribute_error() -> None:
    from mlperf_track.engine import monitors

    with pytest.raises(AttributeError, match=r"mlperf_track\.engine\.monitors.*no_such_monitor"):
        _ = monitors.no_such_monitor  # type: ignore[attr-defined]
    assert not hasattr(monitors, "no_such_monitor")
