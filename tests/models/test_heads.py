"""Head replacement for every torchvision family, on the meta device (no memory, no init cost)."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from mlperf_track.errors import ModelLoadError
from mlperf_track.models.heads import classifier_out_features, find_classifier, replace_classifier
from mlperf_track.models.tiny import TinyCNN

FAMILIES = [
    ("resnet18", "fc"),
    ("mobilenet_v2", "classifier.1"),
    ("mobilenet_v3_small", "classifier.3"),
    ("efficientnet_b0", "classifier.1"),
    ("alexnet", "classifier.6"),
    ("vgg16", "classifier.6"),
    ("convnext_tiny", "classifier.2"),
    ("vit_b_16", "heads.head"),
    ("swin_t", "head"),
    ("densenet121", "classifier"),
    ("squeezenet1_0", "classifier.1"),
    ("shufflenet_v2_x0_5", "fc"),
    ("mnasnet0_5", "classifier.1"),
]


def _meta_model(name: str, **kwargs: object) -> nn.Module:
    with torch.device("meta"):
        return torchvision.models.get_model(name, weights=None, **kwargs).eval()


@pytest.mark.parametrize(("name", "head_path"), FAMILIES)
def test_replace_classifier_per_family(name: str, head_path: str) -> None:
    model = _meta_model(name)
    found = find_classifier(model)
    assert found is not None and found[0] == head_path
    assert classifier_out_features(model) == 1000

    result = replace_classifier(model, 7)

    assert result is model
    assert classifier_out_features(model) == 7
    new_path, new_layer = find_classifier(model) or ("", nn.Identity())
    assert new_path == head_path and new_layer is not found[1]
    size = 224
    out = model(torch.empty(2, 3, size, size, device="meta"))
    assert tuple(out.shape) == (2, 7)


def test_replace_classifier_keeps_module_with_right_size() -> None:
    model = TinyCNN(num_classes=10)
    head = model.fc

    assert replace_classifier(model, 10) is model
    assert model.fc is head


def test_replace_classifier_real_forward_and_bias() -> None:
    model = TinyCNN(num_classes=10)
    replace_classifier(model, 3)

    assert isinstance(model.fc, nn.Linear) and model.fc.bias is not None
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 3)


def test_replace_classifier_replaces_auxiliary_heads() -> None:
    model = _meta_model("inception_v3", aux_logits=True, init_weights=False)
    replace_classifier(model, 5)

    assert classifier_out_features(model) == 5
    aux = model.get_submodule("AuxLogits.fc")
    assert isinstance(aux, nn.Linear) and aux.out_features == 5


def test_replace_classifier_unknown_layout_raises() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten())

    with pytest.raises(ModelLoadError, match="classification head of Sequential"):
        replace_classifier(model, 10)


def test_classifier_out_features_falls_back_to_last_linear() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 4))

    assert find_classifier(model) is None
    assert classifier_out_features(model) == 4
