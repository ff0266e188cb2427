"""Bad input found by a machine: hypothesis generates values for every option of the table (every CLI flag of
bench/run/profile/tune and every MLproject parameter); each value an option refuses must give exit 2 and one
line naming the flag, never a traceback, before any work starts, and leave no MLflow run RUNNING.

The oracle is independent of the parsers where it can be: integers below an option's minimum, non-numbers for
numeric options and unknown words for choice options must be refused; for any other generated text, whatever
the parser refuses must be refused the same way by the CLI, and a parser may refuse only with ConfigError.
"""

from __future__ import annotations

import argparse
import collections
import io
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import mlflow
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlperf_track.cli import main
from mlperf_track.cli import parsers as p
from mlperf_track.cli.options import CliOption, options_for, read
from mlperf_track.errors import ConfigError

COMMANDS = ("bench", "run", "profile", "tune")
#: Free text checked later by its consumer (a model name, a folder, a study, a URL): not generated here.
FREE_TEXT = {"model", "output_dir", "experiment_name", "study_name", "storage", "dataset"}
#: Parsers whose values are integers >= 1 or numbers > 0.
POSITIVE = {p.positive_int, p.positive_number}
CASES = [
    (command, option)
    for command in COMMANDS
    for option in options_for(command)
    if option.name not in FREE_TEXT and option.parse is not p.text
]
#: Inputs tried and tracebacks seen, per test session (printed at the end of the module).
TALLY: collections.Counter[str] = collections.Counter()

ANY_VALUE = st.one_of(
    st.text(max_size=16),
    st.integers(-(10**9), 10**9).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", " ", "-1", "0", "0.0", "nan", "inf", "-inf", "1e309", ",", "1,,2", "max:0", "x=y=z", "é"]),
)
SETTINGS = settings(
    max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    uri = f"sqlite:///{tmp_path_factory.mktemp('props') / 'mlflow.db'}"
    yield uri
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    running = client.search_runs(experiments, filter_string="attributes.status = 'RUNNING'") if experiments else []
    print(f"\nproperty inputs tried: {dict(TALLY)}")
    assert not running, [run.info.run_id for run in running]


@pytest.fixture(autouse=True)
def _isolated(store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLPERF_TRACK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLPERF_TRACK_STORAGE", raising=False)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("work started before the bad input was refused")

    monkeypatch.setattr("mlperf_track.pipeline.runner.run_pipeline", refuse)
    monkeypatch.setattr("mlperf_track.tracking.pipeline_run.run_tracked_pipeline", refuse)
    monkeypatch.setattr("mlperf_track.tuning.runner.run_tune", refuse)


def _refused(option: CliOption, value: str, command: str = "run") -> bool:
    """Whether the option refuses ``value`` (as the commands read it); anything but ConfigError is a bug."""
    try:
        if command == "tune" and option.name == "batch_sizes" and value.strip().lower().startswith("max:"):
            from mlperf_track.tuning.config import parse_batch_sizes

            parse_batch_sizes(value, "cpu")
            return False
        read(argparse.Namespace(**{option.name: [value] if option.kind == "list" else value}), option.name)
    except ConfigError:
        return True
    return False


def _cli_refuses(command: str, flag: str, value: str) -> None:
    """``main`` exits 2 with one line naming ``flag`` and no traceback."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([command, "--model", "tinycnn", "--device", "cpu", f"{flag}={value}"])
    text = err.getvalue()
    TALLY["refused"] += 1
    TALLY["tracebacks"] += "Traceback" in text
    lines = [line for line in text.strip().splitlines() if " WARNING " not in line]
    assert code == 2, (command, flag, value, text)
    assert "Traceback" not in text
    assert len(lines) == 1 and flag in lines[0], (command, flag, value, text)


@pytest.mark.parametrize(("command", "option"), CASES, ids=[f"{c}-{o.name}" for c, o in CASES])
@SETTINGS
@given(value=ANY_VALUE)
def test_every_value_a_parser_refuses_is_one_line_and_exit_2(command: str, option: object, value: str) -> None:
    flag = option.flag  # type: ignore[attr-defined]
    if p.is_auto(value) or p.is_none(value):
        return  # auto ("" too) and none are values of their own
    TALLY["tried"] += 1
    if _refused(option, value, command):  # type: ignore[arg-type]
        _cli_refuses(command, flag, value)


NUMERIC = [(c, o) for c, o in CASES if o.parse in POSITIVE]


@pytest.mark.parametrize(("command", "option"), NUMERIC, ids=[f"{c}-{o.name}" for c, o in NUMERIC])
@SETTINGS
@given(value=st.one_of(st.integers(-(10**6), 0).map(str), st.text(alphabet="abcxyz%$ ", min_size=1, max_size=8)))
def test_numbers_below_one_and_words_are_refused_by_positive_options(command: str, option: object, value: str) -> None:
    if p.is_auto(value) or p.is_none(value):
        return
    TALLY["tried"] += 1
    assert _refused(option, value, command)  # type: ignore[arg-type]
    _cli_refuses(command, option.flag, value)  # type: ignore[attr-defined]


CHOICES = {"device": ("auto", "cpu", "cuda"), "objective": ("throughput", "latency", "multi")}


@pytest.mark.parametrize("name", sorted(CHOICES))
@SETTINGS
@given(word=st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10))
def test_unknown_words_are_refused_by_choice_options(name: str, word: str) -> None:
    if word in CHOICES[name] or p.is_auto(word) or p.is_none(word):
        return
    TALLY["tried"] += 1
    command = "tune"
    _cli_refuses(command, "--" + name, word)


REPO = Path(__file__).resolve().parents[2]


def _environment(tmp_path: Path) -> dict[str, str]:
    import os
    import sys

    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlruns.db'}",
        "PYTHONPATH": str(REPO),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLPERF_TRACK_CACHE": str(tmp_path / "cache"),
    }
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLPERF_TRACK_STORAGE"):
        env.pop(name, None)
    return env


@pytest.mark.integration
@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["tune", "--model", "tinycnn", "--n-trials", "0"], "--n-trials"),
        (["bench", "--model", "tinycnn", "--batch-sizes", "1,,8"], "--batch-sizes"),
    ],
)
def test_a_real_process_refuses_bad_input_in_one_line(tmp_path: Path, argv: list[str], flag: str) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "mlperf_track", *argv], check=False, cwd=tmp_path, env=_environment(tmp_path),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0], done.stderr


@pytest.mark.integration
@pytest.mark.slow
def test_mlflow_run_with_a_bad_parameter_fails_in_one_line_and_leaves_no_run_running(tmp_path: Path) -> None:
    import subprocess
    import sys

    command = [sys.executable, "-m", "mlflow", "run", str(REPO), "--env-manager", "local", "-e", "tune",
               "--experiment-name", "bad-input", "-P", "model=tinycnn", "-P", "memory_limit_mb=-5"]  # fmt: skip
    done = subprocess.run(
        command, check=False, cwd=tmp_path, env=_environment(tmp_path), capture_output=True, text=True, timeout=300
    )
    assert done.returncode != 0
    ours = [line for line in done.stderr.splitlines() if line.startswith("mlperf-track")]
    assert len(ours) == 1 and "--memory-limit-mb" in ours[0], done.stderr[-3000:]
    assert "Traceback" not in done.stderr.split("mlperf-track tune: error")[0]  # mlflow's own report comes after
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlruns.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments)
    assert runs and not [run for run in runs if run.info.status == "RUNNING"]
