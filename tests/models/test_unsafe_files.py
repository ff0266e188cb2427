"""Files that run code when loaded are refused without --trust-pickle: crafted pickles whose payload would create a
marker file, TorchScript archives, .pt2 archives with a pickled record or code in a symbolic shape, and MLflow
models stored as pickles."""

from __future__ import annotations

import contextlib
import io
import json
import warnings
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

from mlperf_track.cli import main
from mlperf_track.errors import ModelLoadError, UnsafeFileError
from mlperf_track.models.registry import load_model
from mlperf_track.models.safety import UNSAFE_LOAD_TAG, unsafe_export_record, unsafe_shape_expression
from mlperf_track.models.tiny import TinyCNN


class Payload:
    """Unpickling this calls ``open(marker, "w")``: the file appears only if the unsafe loader ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def _crafted_checkpoint(path: Path, marker: Path) -> TinyCNN:
    """A checkpoint holding a real state_dict next to the payload (the loader would use the state_dict)."""
    torch.manual_seed(1)
    model = TinyCNN().eval()
    torch.save({"state_dict": model.state_dict(), "notes": Payload(marker)}, path)
    return model


def _input() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_crafted_weights_are_refused_and_never_run(tmp_path: Path) -> None:
    marker, weights = tmp_path / "marker", tmp_path / "weights.pth"
    _crafted_checkpoint(weights, marker)

    with pytest.raises(UnsafeFileError, match=r"--trust-pickle") as info:
        load_model("tinycnn", weights=str(weights))

    assert not marker.exists()
    assert "\n" not in str(info.value) and "imports io.open" in str(info.value)  # what the file calls


def test_crafted_weights_run_only_with_trust_and_are_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    marker, weights = tmp_path / "marker", tmp_path / "weights.pth"
    reference = _crafted_checkpoint(weights, marker)

    with caplog.at_level("WARNING", logger="mlperf_track"):
        loaded = load_model("tinycnn", weights=str(weights), trust_pickle=True)

    assert marker.exists()  # the payload ran: exactly what the flag allows
    assert loaded.tags[UNSAFE_LOAD_TAG] == str(weights)
    assert any("--trust-pickle" in record.getMessage() for record in caplog.records if record.levelname == "WARNING")
    torch.testing.assert_close(loaded.module(_input()), reference(_input()))


@pytest.mark.parametrize("command", ["bench", "run", "tune"])
def test_cli_refuses_crafted_weights_with_one_line_exit_2(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(name, raising=False)
    from mlflow.tracking import fluent

    monkeypatch.setattr(fluent, "_active_experiment_id", None)  # another test's experiment is not in this store
    marker, weights = tmp_path / "marker", tmp_path / "weights.pth"
    _crafted_checkpoint(weights, marker)
    extra = ["--storage", "none", "--n-trials", "1"] if command == "tune" else []

    code = main(
        [
            command,
            "--model",
            "tinycnn",
            "--weights",
            str(weights),
            "--device",
            "cpu",
            "--image-size",
            "32",
            "--batch-sizes",
            "1",
            "--runtimes",
            "eager",
            "--precisions",
            "fp32",
            "--max-time",
            "0.2",
            *extra,
        ]
    )

    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith(f"mlperf-track {command}: error:")]
    assert code == 2, err
    assert not marker.exists()
    assert len(errors) == 1 and "--trust-pickle" in errors[0] and "Traceback" not in err


def test_full_model_pickle_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pth"
    torch.save(TinyCNN().eval(), path)

    with pytest.raises(UnsafeFileError, match=r"model\.pth.*--trust-pickle"):
        load_model(str(path))
    assert load_model(str(path), trust_pickle=True).tags[UNSAFE_LOAD_TAG] == str(path)


def test_torchscript_is_refused_without_trust(tmp_path: Path) -> None:
    path = tmp_path / "model.ts"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.trace(TinyCNN().eval(), _input()).save(str(path))

    with pytest.raises(UnsafeFileError, match=r"TorchScript.*--trust-pickle"):
        load_model(str(path))


def _pt2_with_pickled_weight(source: Path, target: Path, marker: Path) -> None:
    """Rewrite a torch.export archive so that its first weight is declared a pickle and holds the payload."""
    payload = io.BytesIO()
    torch.save(Payload(marker), payload)
    with zipfile.ZipFile(source) as original:
        records = {info.filename: original.read(info) for info in original.infolist()}
    config_name = next(name for name in records if name.endswith("model_weights_config.json"))
    config = json.loads(records[config_name])
    first = next(iter(config["config"].values()))
    first["use_pickle"] = True
    records[config_name] = json.dumps(config).encode()
    records[config_name.rsplit("/", 1)[0] + "/" + first["path_name"]] = payload.getvalue()
    with zipfile.ZipFile(target, "w") as crafted:
        for name, content in records.items():
            crafted.writestr(name, content)


def test_pt2_with_a_pickled_record_is_refused_and_never_runs(tmp_path: Path) -> None:
    clean, crafted, marker = tmp_path / "clean.pt2", tmp_path / "crafted.pt2", tmp_path / "marker"
    torch.export.save(torch.export.export(TinyCNN().eval(), (_input(),)), str(clean))
    _pt2_with_pickled_weight(clean, crafted, marker)

    assert unsafe_export_record(clean) is None
    assert unsafe_export_record(crafted) is not None
    with pytest.raises(UnsafeFileError, match=r"crafted\.pt2.*--trust-pickle"):
        load_model(str(crafted))
    assert not marker.exists()
    with pytest.raises(ModelLoadError):  # trusted: torch.export.load unpickles the record (the payload runs)
        load_model(str(crafted), trust_pickle=True)
    assert marker.exists()


@pytest.mark.parametrize("serialization", ["pickle", "pt2"])
def test_mlflow_model_stored_as_pickle_needs_trust(tmp_path: Path, serialization: str) -> None:
    import mlflow.pytorch

    path = tmp_path / "model"
    model = TinyCNN().eval()
    mlflow.pytorch.save_model(model, str(path), serialization_format=serialization, input_example=_input().numpy())

    if serialization == "pickle":
        with pytest.raises(UnsafeFileError, match=r"MLflow model stored as a pickle.*--trust-pickle"):
            load_model(str(path))
        loaded = load_model(str(path), trust_pickle=True)
        assert loaded.tags[UNSAFE_LOAD_TAG] == str(path)
    else:
        loaded = load_model(str(path))  # a pickle-free pt2 archive loads without the flag
        assert UNSAFE_LOAD_TAG not in loaded.tags
    torch.testing.assert_close(loaded.module(_input()), model(_input()))


def test_cli_run_with_trust_pickle_tags_the_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow
    from mlflow.tracking import fluent

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(fluent, "_active_experiment_id", None)
    marker, weights = tmp_path / "marker", tmp_path / "weights.pth"
    _crafted_checkpoint(weights, marker)

    code = main(
        [
            "run",
            "--model",
            "tinycnn",
            "--weights",
            str(weights),
            "--device",
            "cpu",
            "--image-size",
            "32",
            "--batch-sizes",
            "1",
            "--runtimes",
            "eager",
            "--precisions",
            "fp32",
            "--max-time",
            "0.2",
            "--variants",
            "none",
            "--dataset",
            "synthetic",
            "--trust-pickle",
            "--experiment-name",
            "trusted",
        ]
    )

    assert code == 0 and marker.exists()
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("trusted")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    parent = next(run for run in runs if "mlflow.parentRunId" not in run.data.tags)
    children = [run for run in runs if "mlflow.parentRunId" in run.data.tags]
    assert parent.data.params["config.trust_pickle"] == "true"
    assert children and all(run.data.tags[f"artifact.{UNSAFE_LOAD_TAG}"] == str(weights) for run in children)


def _pt2_with_code_in_a_shape(source: Path, target: Path, marker: Path) -> None:
    """Rewrite a dynamic-batch torch.export archive so that one symbolic shape is Python code creating ``marker``."""
    with zipfile.ZipFile(source) as original:
        records = {info.filename: original.read(info) for info in original.infolist()}
    name = next(name for name in records if name.endswith("models/model.json"))
    text = records[name].decode()
    plain = "Symbol('s77', positive=True, integer=True)"
    assert plain in text
    code = f"__import__('pathlib').Path('{marker}').touch() or {plain}"
    records[name] = text.replace(plain, code.replace("'", "\\u0027"), 1).encode()
    with zipfile.ZipFile(target, "w") as crafted:
        for record, content in records.items():
            crafted.writestr(record, content)


def test_pt2_with_code_in_a_symbolic_shape_is_refused_and_never_runs(tmp_path: Path) -> None:
    """torch.export.load parses each shape expression with sympy.sympify, which evaluates Python."""
    clean, crafted, marker = tmp_path / "clean.pt2", tmp_path / "crafted.pt2", tmp_path / "marker"
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(TinyCNN().eval(), (_input(),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(clean))
    _pt2_with_code_in_a_shape(clean, crafted, marker)

    assert unsafe_export_record(clean) is None  # dynamic shapes as torch writes them load without the flag
    assert unsafe_export_record(crafted) is not None
    with pytest.raises(UnsafeFileError, match=r"crafted\.pt2.*--trust-pickle"):
        load_model(str(crafted))
    assert not marker.exists()
    with contextlib.suppress(Exception):  # trusted: the expression is evaluated (whatever happens next)
        load_model(str(crafted), trust_pickle=True)
    assert marker.exists()


@pytest.mark.parametrize(
    "expression",
    ["s0", "2*s0 + 1", "Max(1, s0)", "FloorDiv(s0, 2)", "Eq(Mod(s1, 8), 0)", "Symbol('s77', positive=True)", "-oo"],
)
def test_plain_shape_expressions_are_accepted(expression: str) -> None:
    assert unsafe_shape_expression(expression) is None


@pytest.mark.parametrize(
    "expression",
    ["__import__('os')", "s0.__class__", "exec", "Symbol('os.system')", "(lambda: 1)()", "s0[0]", "f'{s0}'", "s0; s1"],
)
def test_shape_expressions_that_could_run_code_are_refused(expression: str) -> None:
    assert unsafe_shape_expression(expression) is not None


def test_mlflow_pt2_model_with_code_in_a_symbolic_shape_is_refused_and_never_runs(tmp_path: Path) -> None:
    """MLflow's own guard checks a pt2 model for pickled records only."""
    import mlflow.pytorch

    path, clean, marker = tmp_path / "model", tmp_path / "clean.pt2", tmp_path / "marker"
    mlflow.pytorch.save_model(TinyCNN().eval(), str(path), serialization_format="pt2", input_example=_input().numpy())
    archive = next(path.rglob("*.pt2"))
    batch = torch.export.Dim("batch", min=1, max=64)
    torch.export.save(torch.export.export(TinyCNN().eval(), (_input(),), dynamic_shapes=({0: batch},)), str(clean))
    _pt2_with_code_in_a_shape(clean, archive, marker)

    with pytest.raises(UnsafeFileError, match=r"torch\.export archive runs code.*--trust-pickle"):
        load_model(str(path))
    assert not marker.exists()
