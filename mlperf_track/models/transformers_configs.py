"""Named transformer architectures for ``hf-config:NAME``: built from an in-code config, randomly initialised.

Nothing is downloaded: each name is a Hugging Face ``transformers`` config written here, so a BERT-base-like
encoder or a GPT-2-small-like decoder can be benchmarked offline. The sizes follow the published models
(BERT-base: 12 layers, hidden 768, 12 heads, MLP 3072; GPT-2 small: 12 layers, 768, 12 heads; the tiny ones
follow google/bert_uncased_L-2_H-128_A-2) except the vocabulary: every named model uses the
:data:`VOCAB_SIZE`-token byte-level BPE that :mod:`mlperf_track.data.text_tokenizer` trains on the offline
corpus, so the embedding and the language-model head are smaller than the originals' 30k/50k (the
transformer blocks, where the time goes at sequence 128, are the same). The ``-tiny`` configs are for tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

#: Vocabulary of every named config (the corpus tokenizer's size).
VOCAB_SIZE: Final = 4096
#: Token ids the corpus tokenizer reserves (its first special tokens), shared by every named config.
PAD_ID: Final = 0
BOS_ID: Final = 1
EOS_ID: Final = 2

ENCODER: Final = "encoder"
DECODER: Final = "decoder"


@dataclass(frozen=True)
class NamedConfig:
    """One named architecture.

    Attributes:
        name: The name after ``hf-config:``.
        kind: ``encoder`` or ``decoder``.
        family: The transformers model type (``bert``, ``gpt2``, ``llama``).
        description: One line for listings and tags.
        build: Returns the transformers config object (imports transformers).
    """

    name: str
    kind: str
    family: str
    description: str
    build: Callable[[], Any]


def _bert(hidden: int, layers: int, heads: int, intermediate: int) -> Callable[[], Any]:
    def build() -> Any:
        from transformers import BertConfig

        return BertConfig(
            vocab_size=VOCAB_SIZE,
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=intermediate,
            max_position_embeddings=512,
            pad_token_id=PAD_ID,
        )

    return build


def _gpt2(hidden: int, layers: int, heads: int, positions: int) -> Callable[[], Any]:
    def build() -> Any:
        from transformers import GPT2Config

        return GPT2Config(
            vocab_size=VOCAB_SIZE,
            n_embd=hidden,
            n_layer=layers,
            n_head=heads,
            n_positions=positions,
            bos_token_id=BOS_ID,
            eos_token_id=EOS_ID,
            pad_token_id=PAD_ID,
        )

    return build


def _llama(
    hidden: int, layers: int, heads: int, *, kv_heads: int, intermediate: int, positions: int
) -> Callable[[], Any]:
    def build() -> Any:
        from transformers import LlamaConfig

        return LlamaConfig(
            vocab_size=VOCAB_SIZE,
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=kv_heads,
            intermediate_size=intermediate,
            max_position_embeddings=positions,
            bos_token_id=BOS_ID,
            eos_token_id=EOS_ID,
            pad_token_id=PAD_ID,
            tie_word_embeddings=True,
        )

    return build


NAMED_CONFIGS: Final[dict[str, NamedConfig]] = {
    config.name: config
    for config in (
        NamedConfig(
            "bert-base", ENCODER, "bert", "BERT-base-like encoder (12 layers, 768, 12 heads)", _bert(768, 12, 12, 3072)
        ),
        NamedConfig("bert-tiny", ENCODER, "bert", "tiny BERT encoder (2 layers, 128, 2 heads)", _bert(128, 2, 2, 512)),
        NamedConfig(
            "gpt2-small",
            DECODER,
            "gpt2",
            "GPT-2-small-like decoder (12 layers, 768, 12 heads)",
            _gpt2(768, 12, 12, 1024),
        ),
        NamedConfig("gpt2-tiny", DECODER, "gpt2", "tiny GPT-2 decoder (2 layers, 128, 4 heads)", _gpt2(128, 2, 4, 512)),
        NamedConfig(
            "llama-small",
            DECODER,
            "llama",
            "small Llama-like decoder (8 layers, 512, 8 heads, 4 KV heads)",
            _llama(512, 8, 8, kv_heads=4, intermediate=1376, positions=2048),
        ),
        NamedConfig(
            "llama-tiny",
            DECODER,
            "llama",
            "tiny Llama decoder (2 layers, 128, 4 heads, 2 KV heads)",
            _llama(128, 2, 4, kv_heads=2, intermediate=344, positions=512),
        ),
    )
}


def named_config_names() -> list[str]:
    """The names ``hf-config:`` accepts, in definition order."""
    return list(NAMED_CONFIGS)
