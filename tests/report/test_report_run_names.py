"""``compare`` given run names: resolved within an experiment, or an error that lists the ids to use."""

from __future__ import annotations

import re

import pytest
from report_experiment_factory import FakeExperiment

from mlperf_track.cli import main
from mlperf_track.errors import ConfigError
from mlperf_track.report.runs import client, resolve_run

NAMES = ["--baseline", "baseline-eager-fp32-bs4", "--candidate", "quantized-onnxruntime-fp32-bs4"]


def test_compare_accepts_a_run_name_within_an_experiment(
    fresh_experiment: FakeExperiment,
    two_machine_experiment: FakeExperiment,
    cli_tracking: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["compare", *NAMES]) == 2  # the names exist in several experiments
    err = capsys.readouterr().err
    assert "--baseline='baseline-eager-fp32-bs4'" in err and "pass one of their ids" in err
    assert re.search(r"[0-9a-f]{32} in (two-machines|fresh-)", err)
    assert main(["compare", *NAMES, "--experiment", fresh_experiment.name, "--fail-on", "p50:50%"]) == 0
    assert "quantized-onnxruntime-fp32-bs4" in capsys.readouterr().out


def test_a_run_id_resolves_to_itself_and_an_unknown_name_says_how_to_find_ids(
    fresh_experiment: FakeExperiment, cli_tracking: str
) -> None:
    run_id = fresh_experiment.parent_run_id
    assert resolve_run(client(cli_tracking), run_id) == run_id
    with pytest.raises(ConfigError, match="mlflow runs list"):
        resolve_run(client(cli_tracking), "nothing-is-called-this", experiment=fresh_experiment.name)
