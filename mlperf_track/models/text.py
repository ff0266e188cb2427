"""Text models as the rest of the package sees them: one tensor of token ids in, one tensor of logits out.

Hugging Face models return output objects and take many keyword arguments; runtimes, variants and exporters
here call ``module(inputs)`` with one tensor. Two wrappers give a transformer that form:

- :class:`TokenClassifier`: an encoder (any ``AutoModel`` base) and a linear head on the first token's hidden
  state: ``(batch, seq)`` int64 ids -> ``(batch, classes)`` logits, so accuracy, ONNX export and every
  runtime treat it like an image classifier with another input.
- :class:`CausalLanguageModel`: a decoder (any ``AutoModelForCausalLM``): ``(batch, seq)`` ids -> ``(batch,
  seq, vocab)`` next-token logits, without a cache (perplexity). Generation uses :attr:`CausalLanguageModel.model`
  itself, with its KV cache.

Inputs carry no attention mask: benchmark inputs and evaluation windows are full-length sequences without
padding, where a mask of ones changes nothing. GPT-2's ``Conv1D`` layers (a Linear with transposed weights)
are turned into ``nn.Linear`` when a model is loaded (:func:`linearize_conv1d`), so dynamic int8, torchao and
torch-pruning, which know ``nn.Linear``, treat GPT-2 like every other transformer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mlperf_track.models.base import LoadedModel


@dataclass(frozen=True)
class TextModelInfo:
    """What a text model needs besides its module.

    Attributes:
        kind: ``encoder`` (classification of sequences) or ``decoder`` (next-token prediction, generation).
        vocab_size: Token ids run from 0 to ``vocab_size - 1``.
        max_positions: The longest sequence (prompt plus generated tokens for a decoder) the model accepts.
        family: The transformers model type (``bert``, ``gpt2``, ``llama``, ...).
        tokenizer_path: A folder whose tokenizer files fit the model, or ``None``: the corpus tokenizer
            (:mod:`mlperf_track.data.text_tokenizer`) of ``vocab_size`` tokens is used.
    """

    kind: str
    vocab_size: int
    max_positions: int
    family: str
    tokenizer_path: str | None = None


@dataclass
class LoadedTextModel(LoadedModel):
    """A loaded text model: the HF base encoder or causal LM as :attr:`module`, and its :attr:`text` facts."""

    text: TextModelInfo = field(default_factory=lambda: TextModelInfo("encoder", 1, 1, "unknown"))


def hf_config_of(module: nn.Module) -> Any:
    """The transformers config of a (wrapped) HF model."""
    inner = getattr(module, "model", None) or getattr(module, "encoder", None) or module
    return getattr(inner, "config", None)


class TokenClassifier(nn.Module):
    """An encoder with a linear classification head on the first token's final hidden state.

    Args:
        encoder: A transformers base model returning hidden states first (``BertModel``, ``RobertaModel``...).
        hidden_size: Its hidden size.
        num_classes: Outputs of the head.
    """

    def __init__(self, encoder: nn.Module, hidden_size: int, num_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.fc = nn.Linear(hidden_size, num_classes)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, classes)`` for ids ``(batch, seq)``."""
        hidden = self.encoder(input_ids=input_ids, return_dict=False)[0]
        return self.fc(hidden[:, 0])


class CausalLanguageModel(nn.Module):
    """A causal LM that maps ids to next-token logits without a cache; :attr:`model` generates.

    Args:
        model: A transformers ``*ForCausalLM`` / ``*LMHeadModel``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, seq, vocab)`` for ids ``(batch, seq)``."""
        return self.model(input_ids=input_ids, use_cache=False, return_dict=False)[0]


def linearize_conv1d(module: nn.Module) -> int:
    """Replace every transformers ``Conv1D`` in ``module`` by the equivalent ``nn.Linear``, in place.

    ``Conv1D(nf, nx)`` computes ``x @ W + b`` with ``W`` of shape ``(nx, nf)``; ``nn.Linear(nx, nf)`` with
    weight ``W.T`` computes the same. Returns how many layers were replaced.
    """
    from transformers.pytorch_utils import Conv1D

    replaced = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Conv1D):
                weight = child.weight
                linear = nn.Linear(weight.shape[0], weight.shape[1], device=weight.device, dtype=weight.dtype)
                with torch.no_grad():
                    linear.weight.copy_(weight.t())
                    linear.bias.copy_(child.bias)
                setattr(parent, name, linear)
                replaced += 1
    return replaced


def text_info(loaded: LoadedModel) -> TextModelInfo | None:
    """The text facts of a loaded model, or ``None`` for a model that is not a text model."""
    return loaded.text if isinstance(loaded, LoadedTextModel) else None
