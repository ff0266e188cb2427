"""The model-source registry: resolution order, registration, names, tinycnn."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mlperf_track.errors import ConfigError
from mlperf_track.models import registry
from mlperf_track.models.base import LoadedModel, ModelSource
from mlperf_track.models.registry import load_model, model_names, register_model_source, resolve_source
from mlperf_track.models.tiny import TinyCNN


class _FakeSource(ModelSource):
    name = "fake"

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def matches(self, ref: str) -> bool:
        return ref.startswith(self.prefix)

    def load(self, ref: str, *, weights: str | None = None) -> LoadedModel:
        return LoadedModel(module=torch.nn.Identity(), name=ref, source=self.name, load_s=0.5, weights="fake")

    def known_names(self) -> list[str]:
        return ["fake-model"]


@pytest.fixture
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_front", list(registry._front))
    monkeypatch.setattr(registry, "_back", list(registry._back))


def test_builtin_order_and_names() -> None:
    names = [source.name for source in registry.model_sources()]
    assert names[-5:] == ["torchvision", "tiny", "hf-config", "hf", "file"]
    assert {"resnet18", "vit_b_16", "tinycnn"} <= set(model_names())


@pytest.mark.usefixtures("isolated_registry")
def test_registered_source_is_asked_first() -> None:
    register_model_source(_FakeSource("models:/"))

    loaded = load_model("models:/net/1")

    assert loaded.source == "fake" and loaded.name == "models:/net/1" and loaded.load_s == 0.5
    assert "fake-model" in model_names()


@pytest.mark.usefixtures("isolated_registry")
def test_first_false_appends_and_same_name_replaces() -> None:
    register_model_source(_FakeSource("tiny"), first=False)
    assert resolve_source("tinycnn").name == "tiny"  # the built-in is asked before the appended one
    assert registry.model_sources()[-1].name == "fake"

    register_model_source(_FakeSource("tiny"), first=True)
    assert resolve_source("tinycnn").name == "fake"
    assert [source.name for source in registry.model_sources()].count("fake") == 1


@pytest.mark.usefixtures("isolated_registry")
def test_same_name_as_builtin_replaces_it() -> None:
    replacement = _FakeSource("resnet")
    replacement.name = "torchvision"  # type: ignore[misc]
    register_model_source(replacement, first=False)

    sources = registry.model_sources()
    assert [source.name for source in sources].count("torchvision") == 1 and sources[-1] is replacement


def test_registering_imports_no_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from mlperf_track.models.base import ModelSource\n"
        "from mlperf_track.models.registry import register_model_source\n"
        "class S(ModelSource):\n"
        "    name = 's'\n"
        "    def matches(self, ref): return False\n"
        "    def load(self, ref, *, weights=None): raise NotImplementedError\n"
        "register_model_source(S())\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert result.stdout.strip() == "False"


def test_unknown_reference_lists_forms() -> None:
    with pytest.raises(ConfigError, match="a torchvision classification model name, tinycnn"):
        load_model("no-such-thing-at-all")
    with pytest.raises(ConfigError, match=r"model files must end in \.pt"):
        load_model("model.onnx")


def test_tinycnn_is_small_seeded_and_loads_weights(tmp_path: Path) -> None:
    first, second = load_model("tinycnn"), load_model("tinycnn")
    params = sum(parameter.numel() for parameter in first.module.parameters())

    assert 5_000 <= params <= 20_000
    assert first.source == "tiny" and first.weights == "random"
    assert first.num_classes == 10 and first.default_image_size == 32
    assert isinstance(first.module, TinyCNN) and not first.module.training
    torch.testing.assert_close(first.module.get_parameter("fc.weight"), second.module.get_parameter("fc.weight"))
    assert first.module(torch.randn(3, 3, 8, 8)).shape == (3, 10)

    torch.manual_seed(5)
    other = TinyCNN(num_classes=4)
    path = tmp_path / "w.pth"
    torch.save({f"module.{key}": value for key, value in other.state_dict().items()}, path)
    loaded = load_model("tinycnn", weights=str(path))
    assert loaded.num_classes == 4 and loaded.weights == f"file:{path}"
    torch.testing.assert_close(loaded.module.get_parameter("fc.weight"), other.fc.weight)
