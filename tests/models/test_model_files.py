"""Model files: TorchScript and torch.export round trips on tinycnn, pickled models, and errors."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from mlperf_track.errors import ConfigError, ModelLoadError
from mlperf_track.models.files import sniff_format
from mlperf_track.models.heads import replace_classifier
from mlperf_track.models.registry import load_model
from mlperf_track.models.tiny import TinyCNN


@pytest.fixture
def tiny() -> TinyCNN:
    torch.manual_seed(3)
    model = TinyCNN().eval()
    with torch.no_grad():  # non-trivial BN statistics, so a lost buffer would show in the outputs
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                assert module.running_mean is not None and module.running_var is not None
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 1.5)
    return model


def _input() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _save_torchscript(model: torch.nn.Module, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.trace is deprecated in torch 2.14
        torch.jit.trace(model, _input()).save(str(path))


@pytest.mark.parametrize("suffix", [".ts", ".pt"])
def test_torchscript_round_trip(tiny: TinyCNN, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"tiny{suffix}"
    _save_torchscript(tiny, path)

    loaded = load_model(str(path), trust_pickle=True)

    assert sniff_format(path) == "torchscript"
    assert loaded.tags["model.unsafe_load"] == str(path)
    assert loaded.source == "file" and loaded.name == "tiny" and loaded.tags["model.format"] == "torchscript"
    assert loaded.num_classes == 10 and loaded.load_s > 0
    torch.testing.assert_close(loaded.module(_input()), tiny(_input()))


@pytest.mark.parametrize("suffix", [".pt2", ".pt"])
def test_torch_export_round_trip(tiny: TinyCNN, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"tiny{suffix}"
    torch.export.save(torch.export.export(tiny, (_input(),)), str(path))

    loaded = load_model(f"file:{path}")  # every record is JSON or raw tensor bytes: no --trust-pickle needed

    assert sniff_format(path) == "export"
    assert loaded.tags["model.format"] == "export" and "model.unsafe_load" not in loaded.tags
    assert loaded.num_classes == 10 and loaded.default_image_size == 32
    torch.testing.assert_close(loaded.module(_input()), tiny(_input()))


def test_torchscript_with_weights_file(tiny: TinyCNN, tmp_path: Path) -> None:
    path, weights = tmp_path / "tiny.ts", tmp_path / "w.pth"
    _save_torchscript(TinyCNN().eval(), path)
    torch.save(tiny.state_dict(), weights)

    loaded = load_model(str(path), weights=str(weights), trust_pickle=True)

    assert loaded.weights == f"file:{weights}"
    torch.testing.assert_close(loaded.module(_input()), tiny(_input()))


def test_pickled_full_model(tiny: TinyCNN, tmp_path: Path) -> None:
    replace_classifier(tiny, 4)
    path = tmp_path / "model.pth"
    torch.save(tiny, path)

    loaded = load_model(str(path), trust_pickle=True)

    assert sniff_format(path) == "pickle"
    assert loaded.num_classes == 4
    torch.testing.assert_close(loaded.module(_input()), tiny(_input()))


def test_state_dict_as_model_is_refused_with_hint(tiny: TinyCNN, tmp_path: Path) -> None:
    path = tmp_path / "weights.pth"
    torch.save(tiny.state_dict(), path)

    with pytest.raises(ModelLoadError, match=r"holds a state_dict, not a model.*--weights"):
        load_model(str(path))


def test_missing_model_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pt2"
    with pytest.raises(ConfigError, match=r"missing\.pt2") as info:
        load_model(str(missing))
    assert info.value.parameter == "model"


def test_corrupt_model_file(tmp_path: Path) -> None:
    path = tmp_path / "junk.pt"
    path.write_bytes(b"not a model")

    with pytest.raises(ModelLoadError, match=r"junk\.pt") as info:
        load_model(str(path))
    assert "\n" not in str(info.value)


def test_missing_weights_for_file_model(tiny: TinyCNN, tmp_path: Path) -> None:
    path = tmp_path / "tiny.ts"
    _save_torchscript(tiny, path)

    with pytest.raises(ConfigError, match="invalid weights="):
        load_model(str(path), weights=str(tmp_path / "none.pth"))
