"""optuna-dashboard, really started on the storage of a study the tuner wrote (Optuna and SQLite real, the measurer
a fake): the objective has its metric's name, batch size and threads their real values, each trial its case."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tuning_fakes import FakeBackend, small_space

from mlperf_track import metrics as m
from mlperf_track.tuning.config import TuneConfig
from mlperf_track.tuning.runner import run_tune
from mlperf_track.tuning.space import BATCH_PARAM

DASHBOARD = Path(sys.executable).parent / "optuna-dashboard"
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not DASHBOARD.is_file(), reason="optuna-dashboard is not installed (pip install -e .[tune])"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A study the tuner wrote into ``optuna.db``, and optuna-dashboard serving that file: (its URL, study name)."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    config = TuneConfig.create("fakenet", device="cpu", n_trials=6, seed=0, storage=storage, study_name="read-me")
    run_tune(config, FakeBackend(small_space()), track=False)
    url = f"http://127.0.0.1:{_free_port()}"
    command = [str(DASHBOARD), storage, "--host", "127.0.0.1", "--port", url.rsplit(":", 1)[1]]
    log = (tmp_path / "dashboard.log").open("wb")
    process = subprocess.Popen(command, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _get(f"{url}/api/meta")
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError((tmp_path / "dashboard.log").read_text(errors="replace")) from None
                time.sleep(0.3)
        yield url, "read-me"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_optuna_dashboard_reads_a_study_the_tuner_wrote(dashboard: tuple[str, str]) -> None:
    url, name = dashboard
    summaries = _get(f"{url}/api/studies")["study_summaries"]
    (study,) = [summary for summary in summaries if summary["study_name"] == name]
    detail = _get(f"{url}/api/studies/{study['study_id']}")
    assert detail["objective_names"] == [m.THROUGHPUT]  # not "Objective 0"
    trials = detail["trials"]
    assert len(trials) == 6
    batch_sizes = set(small_space().batch_sizes)
    for trial in trials:
        params = {param["name"]: param["param_external_value"] for param in trial["params"]}
        assert int(params[BATCH_PARAM]) in batch_sizes  # the batch size itself, not an index into the choices
        attrs = {attr["key"]: attr["value"] for attr in trial["user_attrs"]}
        assert {"variant", "runtime", "precision"} <= set(attrs), sorted(attrs)
