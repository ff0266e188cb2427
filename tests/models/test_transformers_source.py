"""``hf-config:NAME`` and ``hf:PATH``: offline transformer models, their facts, one clear error per bad reference."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from mlperf_track.errors import ConfigError, ModelLoadError
from mlperf_track.models.registry import load_model, model_names, resolve_source
from mlperf_track.models.text import CausalLanguageModel, LoadedTextModel, TokenClassifier, linearize_conv1d
from mlperf_track.models.transformers_configs import NAMED_CONFIGS, VOCAB_SIZE

transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("name", ["bert-tiny", "gpt2-tiny", "llama-tiny"])
def test_named_configs_load_with_random_weights_that_the_model_reports(name: str) -> None:
    loaded = load_model(f"hf-config:{name}")
    assert isinstance(loaded, LoadedTextModel)
    assert loaded.weights == "random"
    assert "random" in loaded.tags["model.init"]
    assert loaded.text.kind == NAMED_CONFIGS[name].kind
    assert loaded.text.vocab_size == VOCAB_SIZE
    assert loaded.text.max_positions == 512
    assert not loaded.module.training


def test_named_configs_are_seeded_so_two_loads_agree() -> None:
    first, second = (load_model("hf-config:gpt2-tiny").module for _ in range(2))
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_hf_config_names_are_offered_for_did_you_mean() -> None:
    assert "hf-config:gpt2-tiny" in model_names()
    with pytest.raises(ConfigError, match=r"invalid model='gpt2-tinny'.*did you mean gpt2-tiny"):
        load_model("hf-config:gpt2-tinny")


def test_a_path_that_is_not_a_model_folder_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for ref in (f"hf:{tmp_path / 'missing'}", f"hf:{tmp_path / 'empty'}"):
        with pytest.raises(ConfigError, match=r"config\.json") as info:
            load_model(ref)
        assert "\n" not in str(info.value)


def _gpt2_folder(path: Path) -> nn.Module:
    """A GPT-2 saved as transformers writes it (its Conv1D layers as they are)."""
    config = NAMED_CONFIGS["gpt2-tiny"].build()
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).eval()
    model.save_pretrained(path)
    return model


def test_a_saved_decoder_folder_loads_offline_with_the_same_outputs(tmp_path: Path) -> None:
    original = _gpt2_folder(tmp_path / "gpt2")
    loaded = load_model(f"hf:{tmp_path / 'gpt2'}")
    assert isinstance(loaded, LoadedTextModel)
    assert loaded.text.kind == "decoder" and loaded.source == "hf"
    assert loaded.text.tokenizer_path is None  # no tokenizer files: the corpus BPE is used
    ids = torch.randint(0, VOCAB_SIZE, (2, 10))
    with torch.inference_mode():
        assert torch.allclose(CausalLanguageModel(original)(ids), CausalLanguageModel(loaded.module)(ids), atol=1e-5)


def test_a_saved_encoder_folder_loads_as_its_base_model(tmp_path: Path) -> None:
    load_model("hf-config:bert-tiny").module.save_pretrained(tmp_path / "bert")
    loaded = load_model(f"hf:{tmp_path / 'bert'}")
    assert loaded.text.kind == "encoder"
    logits = TokenClassifier(loaded.module, 128, 3).eval()(torch.randint(0, VOCAB_SIZE, (2, 7)))
    assert logits.shape == (2, 3)


def test_weights_that_do_not_fit_the_config_are_refused_not_reinitialised(tmp_path: Path) -> None:
    import json

    _gpt2_folder(tmp_path / "gpt2")
    config_file = tmp_path / "gpt2" / "config.json"
    config = json.loads(config_file.read_text())
    config["n_inner"] = 256  # the saved MLP weights are 512 wide
    config_file.write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=r"cannot load the model|do not fit"):
        load_model(f"hf:{tmp_path / 'gpt2'}")


def test_encoder_decoder_models_are_refused(tmp_path: Path) -> None:
    config = transformers.T5Config(vocab_size=64, d_model=16, d_ff=32, num_layers=1, num_heads=2, d_kv=8)
    transformers.T5ForConditionalGeneration(config).save_pretrained(tmp_path / "t5")
    with pytest.raises(ConfigError, match="encoder-decoder"):
        load_model(f"hf:{tmp_path / 't5'}")


def test_hf_prefixes_resolve_to_their_sources() -> None:
    assert resolve_source("hf-config:bert-tiny").name == "hf-config"
    assert resolve_source("hf:/some/folder").name == "hf"


def test_linearize_conv1d_keeps_the_function() -> None:
    from transformers.pytorch_utils import Conv1D

    block = nn.Sequential(Conv1D(6, 4), nn.ReLU(), Conv1D(3, 6))
    x = torch.randn(5, 4)
    expected = block(x)
    assert linearize_conv1d(block) == 2
    assert all(not isinstance(layer, Conv1D) for layer in block)
    assert torch.allclose(block(x), expected, atol=1e-6)


def test_gpt2_is_loaded_with_linear_layers() -> None:
    loaded = load_model("hf-config:gpt2-tiny")
    assert int(loaded.tags["model.conv1d_as_linear"]) == 8  # c_attn, c_proj, c_fc, c_proj per block
