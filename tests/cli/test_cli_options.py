"""One vocabulary: the option table, its spellings, shared defaults, global flags, and bad input before any work."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from mlperf_track.cli import build_parser, main
from mlperf_track.cli.common import pipeline_config_from_args
from mlperf_track.cli.options import BY_NAME, COMMANDS, OPTIONS, auto_meaning, options_for
from mlperf_track.pipeline.defaults import auto_defaults


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLPERF_TRACK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a pipeline or a study starts: bad input must be refused before."""

    import mlflow  # noqa: F401 - first, as the CLI does: mlflow's plugin loading then finds our modules complete

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("work started before the bad input was refused")

    monkeypatch.setattr("mlperf_track.pipeline.runner.run_pipeline", refuse)
    monkeypatch.setattr("mlperf_track.tracking.pipeline_run.run_tracked_pipeline", refuse)
    monkeypatch.setattr("mlperf_track.tuning.runner.run_tune", refuse)


def _parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_every_command_and_option_spelling_is_unique() -> None:
    for command in COMMANDS:
        spellings = [spelling for option in options_for(command) for spelling in option.option_strings]
        assert len(spellings) == len(set(spellings)), command
    assert len(BY_NAME) == len(OPTIONS)


@pytest.mark.parametrize("command", ["bench", "run", "profile", "tune"])
@pytest.mark.parametrize(
    ("spelling", "name"),
    [
        ("--batch-sizes", "batch_sizes"),
        ("--batch-size", "batch_sizes"),
        ("--batch_size", "batch_sizes"),
        ("--batch_sizes", "batch_sizes"),
        ("--precision", "precisions"),
        ("--runtime", "runtimes"),
        ("--variant", "variants"),
        ("--image_size", "image_size"),
        ("--max_time", "max_time"),
    ],
)
def test_singular_plural_dash_and_underscore_spellings_all_work(command: str, spelling: str, name: str) -> None:
    args = _parse(command, "--model", "tinycnn", spelling, "7")
    assert getattr(args, name) == "7"


@pytest.mark.parametrize("command", ["bench", "run", "profile", "tune"])
def test_help_shows_every_default_and_what_auto_means(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option in options_for(command):
        assert option.flag in text
        default = option.default_for(command)
        if default is not None:
            assert f"(default: {default}" in text, option.name
    if command != "tune":
        cpu = ",".join(str(size) for size in auto_defaults("cpu")["batch_sizes"])
        assert f"{cpu} on cpu" in auto_meaning("batch_sizes") and auto_meaning("batch_sizes") in text


@pytest.mark.parametrize("flag", ["--quiet", "--verbose", "--debug"])
def test_global_flags_work_before_and_after_the_subcommand(flag: str) -> None:
    dest = flag.lstrip("-")
    assert getattr(_parse(flag, "run", "--model", "x"), dest) is True
    assert getattr(_parse("run", "--model", "x", flag), dest) is True
    assert getattr(_parse("tune", "--model", "x"), dest) is False


def test_bench_run_and_profile_share_the_auto_defaults() -> None:
    cpu = auto_defaults("cpu")
    configs = {
        command: pipeline_config_from_args(_parse(command, "--model", "tinycnn", "--device", "cpu"))
        for command in ("bench", "run", "profile")
    }
    for config in configs.values():
        assert config.batch_sizes == tuple(cpu["batch_sizes"])
        assert config.runtimes == tuple(cpu["runtimes"])
        assert config.precisions == tuple(cpu["precisions"])
        assert config.image_size == cpu["image_size"]
        assert config.max_accuracy_drop == 0.01 and config.repeats == 1 and config.pin_cores is None
    assert configs["run"].variants == tuple(cpu["variants"])
    assert configs["bench"].variants == () == configs["profile"].variants


def test_new_pipeline_options_reach_the_config() -> None:
    args = _parse(
        "run", "--model", "tinycnn", "--device", "cpu", "--repeats", "3", "--pin-cores", "0",
        "--max-accuracy-drop", "none", "--options", "ratio=0.3,fine_tune_epochs=0", "--variants", "pruned",
        "--epochs", "2", "--channels-last",
    )  # fmt: skip
    config = pipeline_config_from_args(args)
    assert config.repeats == 3 and config.pin_cores == (0,) and config.max_accuracy_drop is None
    assert config.option_dict == {"ratio": "0.3", "fine_tune_epochs": "0"}
    assert config.epochs == 2 and config.channels_last is True


def test_epochs_auto_passes_the_device_default_through_unchanged() -> None:
    config = pipeline_config_from_args(_parse("run", "--model", "tinycnn", "--device", "cpu", "--variants", "none"))
    assert auto_defaults("cpu")["epochs"] == "auto"
    assert config.epochs is None  # PipelineConfig stores the default's "auto" as None: train until converged


def test_unknown_flag_names_the_close_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["run", "--model", "tinycnn", "--batch-szie", "8"])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and len(err.splitlines()) == 1
    assert "did you mean --batch-sizes" in err  # --max-batch-size (the load stage) is close too
    with pytest.raises(SystemExit):
        main(["bench", "--model", "tinycnn", "--frobnicate"])
    assert "see: mlperf-track bench --help" in capsys.readouterr().err


LIST_OPTIONS = {
    "--batch-sizes": "1",
    "--precisions": "fp32",
    "--runtimes": "eager",
    "--variants": "pruned",
    "--options": "ratio=0.3",
    "--pin-cores": "0",
}


@pytest.mark.parametrize("flag", sorted(LIST_OPTIONS))
@pytest.mark.parametrize("shape", ["{x},,{x}", "{x},", ",{x}", " , ", ","])
def test_an_empty_item_in_a_comma_list_is_refused_before_any_work(
    flag: str, shape: str, capsys: pytest.CaptureFixture[str], no_work: None
) -> None:
    value = shape.format(x=LIST_OPTIONS[flag])
    code = main(["run", "--model", "tinycnn", "--device", "cpu", flag, value])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert flag in err and "without empty items" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--options", "colour=red"], "colour=red"),
        (["--options", "compile_mode=max-autotune", "--runtimes", "eager"], "an option of compile"),
        (["--options", "compile_mode=fastest", "--runtimes", "compile"], "--option compile_mode"),
        (["--options", "ratio=1.5", "--variants", "pruned_structured"], "--option ratio"),
        (["--options", "temperature=-1", "--variants", "distilled"], "--option temperature"),
        (["--options", "noequals"], "KEY=VALUE"),
        (["--options", "=3"], "KEY=VALUE"),
        (["--variants", "quantised"], "did you mean quantized"),
        (["--variants", "pruned_structured+quantised"], "--variants"),
        (["--runtimes", "onnx"], "--runtimes"),
        (["--repeats", "0"], "--repeats"),
        (["--pin-cores", "-1"], "--pin-cores"),
        (["--pin-cores", "4096"], "--pin-cores"),
        (["--max-accuracy-drop", "1.5"], "--max-accuracy-drop"),
        (["--epochs", "-1"], "--epochs"),
        (["--train-precision", "fp16"], "--train-precision"),
        (["--target-ci", "2"], "--target-ci"),
        (["--accuracy", "maybe"], "--accuracy"),
        (["--dataset", "digitz"], "did you mean digits"),
        (["--experiment-name", "x", "--seed", "-4"], "--seed"),
    ],
)
def test_bad_input_is_one_line_exit_2_before_any_work(
    arguments: list[str], expected: str, capsys: pytest.CaptureFixture[str], no_work: None
) -> None:
    code = main(["run", "--model", "tinycnn", "--device", "cpu", *arguments])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert expected in err and "Traceback" not in err


def test_bad_input_leaves_no_log_file_behind(tmp_path: Path, no_work: None) -> None:
    assert main(["bench", "--model", "tinycnn", "--batch-sizes", "0"]) == 2
    assert not list((tmp_path / "mlperf_track_output" / "logs").glob("*.log"))


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--batch-sizes", "1,,2"], "--batch-sizes"),
        (["--runtimes", "eager,"], "--runtimes"),
        (["--threads", "1,,2"], "--threads"),
        (["--max-accuracy-drop", "7"], "--max-accuracy-drop"),
        (["--variants", "prunned"], "did you mean pruned"),
    ],
)
def test_tune_shares_the_checks(
    arguments: list[str], expected: str, capsys: pytest.CaptureFixture[str], no_work: None
) -> None:
    code = main(["tune", "--model", "tinycnn", "--device", "cpu", "--storage", "none", *arguments])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and expected in err, err


def test_tune_defaults_build_a_tune_config() -> None:
    from mlperf_track.cli.tune import config_from_args

    config = config_from_args(_parse("tune", "--model", "tinycnn", "--device", "cpu"))
    pipeline, search = config.pipeline, config.search  # TuneConfig = PipelineConfig + SearchSettings
    assert pipeline.device == "cpu" and search.sampler == "auto" and pipeline.batch_sizes == (1, 2, 4, 8, 16, 32, 64)
    assert pipeline.variants == () and pipeline.max_accuracy_drop == 0.01 and search.study_name is None
    assert search.n_trials == 30 and search.experiment is None and search.threads == ()
    assert search.time_budget_s is None and search.warm_start == "auto"
    spelled = config_from_args(_parse("tune", "--model", "x", "--device", "cpu", "--batch-size", "1,2",
                                      "--precision", "fp32"))  # fmt: skip
    assert spelled.pipeline.batch_sizes == (1, 2) and spelled.pipeline.precisions == ("fp32",)
    no_limit = config_from_args(_parse("tune", "--model", "x", "--device", "cpu", "--max-accuracy-drop", "none"))
    assert no_limit.pipeline.max_accuracy_drop is None
