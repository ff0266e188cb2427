"""Tokenizers for text models: a model folder's own, or a byte-level BPE trained offline on the corpus.

The corpus tokenizer is trained with Hugging Face ``tokenizers`` (``ByteLevelBPETokenizer``: every byte is
representable, so any text encodes) on the training split of :func:`~.text_corpus.pydoc_topics`, with the
special tokens ``<pad>``, ``<bos>``, ``<eos>``, ``<cls>`` as ids 0-3 (the ids the named configs use). It is
cached as JSON under ``cache_dir/tokenizers``, keyed by the vocabulary size and the corpus text, so it is
trained once per machine and Python (about a second).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlperf_track.data.text_corpus import corpus_digest, pydoc_topics, split_of
from mlperf_track.errors import DataError, MissingDependencyError

logger = logging.getLogger(__name__)

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<cls>")
#: Merges below this vocabulary size leave a byte-level BPE with too few tokens to learn words.
MIN_VOCAB = 300


@dataclass(frozen=True)
class TextTokenizer:
    """What the text datasets need from a tokenizer.

    Attributes:
        name: Where it came from (``corpus-bpe-4096``, ``hf:/path``).
        encode_batch: Texts to token ids (no special tokens added).
        vocab_size: Ids are below this.
        pad_id: Padding token.
        cls_id: Token put first in a sequence to classify.
        eos_id: Token between documents.
    """

    name: str
    encode_batch: Callable[[list[str]], list[list[int]]]
    vocab_size: int
    pad_id: int
    cls_id: int
    eos_id: int


def _tokenizers() -> Any:
    try:
        import tokenizers
    except ImportError as error:
        raise MissingDependencyError("tokenizers", "transformers", "training the corpus tokenizer") from error
    return tokenizers


def _wrap(tokenizer: Any, name: str) -> TextTokenizer:
    ids = [tokenizer.token_to_id(token) for token in SPECIAL_TOKENS]

    def encode_batch(texts: list[str]) -> list[list[int]]:
        return [list(encoding.ids) for encoding in tokenizer.encode_batch(texts)]

    return TextTokenizer(name, encode_batch, int(tokenizer.get_vocab_size()), ids[0], ids[3], ids[2])


def corpus_tokenizer(vocab_size: int, cache_dir: Path, *, seed: int = 0) -> TextTokenizer:
    """The byte-level BPE of ``vocab_size`` tokens trained on the corpus' training split, cached on disk.

    Raises:
        DataError: ``vocab_size`` is too small for a byte-level BPE.
    """
    if vocab_size < MIN_VOCAB:
        raise DataError(f"a byte-level BPE needs at least {MIN_VOCAB} tokens; this model has {vocab_size}")
    tokenizers = _tokenizers()
    documents = [doc for doc in pydoc_topics() if split_of(doc.origin, seed) == "train"]
    name = f"corpus-bpe-{vocab_size}"
    path = Path(cache_dir) / "tokenizers" / f"pydoc-bpe-{vocab_size}-s{seed}-{corpus_digest(documents)}.json"
    if path.is_file():
        return _wrap(tokenizers.Tokenizer.from_file(str(path)), name)
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        (doc.text for doc in documents), vocab_size=vocab_size, min_frequency=2, special_tokens=list(SPECIAL_TOKENS)
    )
    trained = bpe._tokenizer  # the underlying tokenizers.Tokenizer (ByteLevelBPETokenizer wraps it)
    if trained.get_vocab_size() > vocab_size:
        raise DataError(f"the corpus BPE came out with {trained.get_vocab_size()} tokens, above {vocab_size}")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial")
    trained.save(str(partial))
    os.replace(partial, path)  # atomic: a concurrent reader sees no half-written file
    logger.info("trained the %d-token corpus BPE (%s)", trained.get_vocab_size(), path)
    return _wrap(trained, name)


def folder_tokenizer(path: str) -> TextTokenizer:
    """The tokenizer saved in a model folder (``AutoTokenizer``, offline).

    Raises:
        DataError: The folder's tokenizer cannot be read.
    """
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as error:
        raise DataError(f"cannot read the tokenizer in {path}: {str(error).splitlines()[0]}") from error

    def encode_batch(texts: list[str]) -> list[list[int]]:
        return [list(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def first(*names: str) -> int:
        for attribute in names:
            value = getattr(tokenizer, attribute, None)
            if isinstance(value, int):
                return value
        return 0

    return TextTokenizer(
        name=f"hf:{path}",
        encode_batch=encode_batch,
        vocab_size=len(tokenizer),
        pad_id=first("pad_token_id", "eos_token_id"),
        cls_id=first("cls_token_id", "bos_token_id"),
        eos_id=first("eos_token_id", "sep_token_id"),
    )
