"""torchvision models by name: weights from a file, from the torch hub cache, or seeded random init."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import torchvision

from mlperf_track.errors import ConfigError, ModelLoadError
from mlperf_track.models.registry import load_model
from mlperf_track.models.torchvision_zoo import _crop_size, cached_weights_path, torchvision_model_names

SMALL = "mobilenet_v3_small"


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache, so no weights are found unless a test puts them there."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


def _same_parameters(left: torch.nn.Module, right: torch.nn.Module) -> bool:
    left_state, right_state = left.state_dict(), right.state_dict()
    return left_state.keys() == right_state.keys() and all(
        torch.equal(left_state[key], right_state[key]) for key in left_state
    )


def test_names_cover_the_issue_list() -> None:
    names = torchvision_model_names()
    for name in (
        "resnet18",
        "resnet50",
        "mobilenet_v2",
        "mobilenet_v3_small",
        "mobilenet_v3_large",
        "efficientnet_b0",
        "alexnet",
        "vgg16",
        "convnext_tiny",
        "vit_b_16",
    ):
        assert name in names
    assert "fasterrcnn_resnet50_fpn" not in names  # detection models are not classification models


def test_random_init_is_seeded_and_warns(torch_home: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mlperf_track.models.torchvision_zoo"):
        first = load_model("resnet18")
    second = load_model("torchvision:resnet18")

    assert first.weights == "random" and first.source == "torchvision" and first.name == "resnet18"
    assert "no weights for resnet18" in caplog.text and "resnet18-f37072fd.pth" in caplog.text
    assert first.num_classes == 1000 and first.default_image_size == 224
    assert first.load_s > 0 and not first.module.training
    assert _same_parameters(first.module, second.module)
    out = first.module(torch.randn(1, 3, 32, 32))
    assert out.shape == (1, 1000)


def test_weights_from_torch_hub_cache(torch_home: Path) -> None:
    member = torchvision.models.get_model_weights(SMALL).DEFAULT
    path = cached_weights_path(member)
    assert path == torch_home / "hub" / "checkpoints" / "mobilenet_v3_small-047dcff4.pth"
    path.parent.mkdir(parents=True)
    torch.manual_seed(123)
    reference = torchvision.models.get_model(SMALL, weights=None)
    torch.save(reference.state_dict(), path)

    loaded = load_model(SMALL)

    assert loaded.weights == f"torch-cache:{path}"
    assert loaded.tags["weights.enum"] == str(member)
    assert loaded.default_image_size == 224
    assert _same_parameters(loaded.module, reference)


def test_weights_file_state_dict_and_fine_tuned_head(torch_home: Path, tmp_path: Path) -> None:
    torch.manual_seed(7)
    reference = torchvision.models.get_model(SMALL, weights=None, num_classes=10)
    path = tmp_path / "tuned.pth"
    torch.save({"state_dict": reference.state_dict()}, path)

    loaded = load_model(SMALL, weights=str(path))

    assert loaded.weights == f"file:{path}"
    assert loaded.num_classes == 10
    assert _same_parameters(loaded.module, reference)


def test_weights_file_full_model_checkpoint(torch_home: Path, tmp_path: Path) -> None:
    reference = torchvision.models.get_model(SMALL, weights=None).eval()
    path = tmp_path / "full.pt"
    torch.save(reference, path)

    loaded = load_model(SMALL, weights=str(path), trust_pickle=True)

    assert loaded.weights == f"file:{path}"
    assert _same_parameters(loaded.module, reference)


def test_missing_weights_file_is_config_error(torch_home: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope.pth"
    with pytest.raises(ConfigError, match=r"invalid weights=.*nope\.pth.*an existing file") as info:
        load_model("resnet18", weights=str(missing))
    assert info.value.parameter == "weights"


def test_mismatched_weights_file_is_model_load_error(torch_home: Path, tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(2, 2)}, path)

    with pytest.raises(ModelLoadError, match=r"do not fit MobileNetV3: missing keys \d+ .*unexpected keys 1"):
        load_model(SMALL, weights=str(path))


def test_unknown_name_suggests_closest() -> None:
    with pytest.raises(ConfigError, match="did you mean resnet18") as info:
        load_model("resnet81")
    assert info.value.parameter == "model"


def test_vit_records_fixed_image_size(torch_home: Path) -> None:
    loaded = load_model("vit_b_16")

    assert loaded.tags["model.fixed_image_size"] == "224"
    assert loaded.default_image_size == 224


def test_crop_size_from_weights_meta() -> None:
    assert _crop_size(torchvision.models.Inception_V3_Weights.DEFAULT) == 299
    assert _crop_size(torchvision.models.ViT_B_16_Weights.IMAGENET1K_SWAG_E2E_V1) == 384


def test_weights_enum_name_picks_that_cached_file(torch_home: Path) -> None:
    enum = torchvision.models.MobileNet_V3_Large_Weights
    assert enum.DEFAULT is enum.IMAGENET1K_V2
    with pytest.raises(ConfigError, match=r"nothing is downloaded: place mobilenet_v3_large-8738ca79\.pth in"):
        load_model("mobilenet_v3_large", weights="IMAGENET1K_V1")

    models = {}
    for seed, member in enumerate((enum.IMAGENET1K_V1, enum.IMAGENET1K_V2)):
        torch.manual_seed(seed)
        models[member] = torchvision.models.mobilenet_v3_large(weights=None)
        cached_weights_path(member).parent.mkdir(parents=True, exist_ok=True)
        torch.save(models[member].state_dict(), cached_weights_path(member))

    named = load_model("mobilenet_v3_large", weights="IMAGENET1K_V1")
    default = load_model("mobilenet_v3_large")

    assert named.weights == f"torch-cache:{cached_weights_path(enum.IMAGENET1K_V1)}"
    assert named.tags["weights.enum"] == str(enum.IMAGENET1K_V1)
    assert _same_parameters(named.module, models[enum.IMAGENET1K_V1])
    assert default.tags["weights.enum"] == str(enum.IMAGENET1K_V2)
    assert _same_parameters(default.module, models[enum.IMAGENET1K_V2])
