"""Text datasets for transformer models: token windows for language modelling, labelled windows to classify.

References (what ``--dataset`` takes for a text model):

- ``pydoc-topics``: the corpus of :func:`~.text_corpus.pydoc_topics` for decoders. Each split's documents
  are tokenized, joined with ``<eos>`` and cut into windows of ``seq_len + 1`` tokens: items are
  ``(ids[:-1], ids[1:])``, the inputs and their next tokens (perplexity, training).
- ``stdlib-docstrings``: the classification task of :func:`~.text_corpus.docstring_task` for encoders. Each
  split's documents of one class are joined and cut into windows of ``seq_len - 1`` tokens behind a ``<cls>``
  token: items are ``(ids, label)``, so every window is full text (no padding, no mask needed).
- ``synthetic``: no data (performance only).
- ``auto``: ``pydoc-topics`` for a decoder, ``stdlib-docstrings`` for an encoder.

Splits: ``train`` (training), ``holdout`` (early stopping) and ``val`` (the scores every case reports), by
document. :class:`TextDataset` is a :class:`~.base.DatasetSplits`, so accuracy and the pipeline read it as
they read images; its ``image_size`` holds the window length.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

import torch
from torch.utils.data import Dataset, TensorDataset

from mlperf_track.data.base import DatasetSplits
from mlperf_track.data.text_corpus import Document, docstring_task, pydoc_topics, split_of
from mlperf_track.data.text_tokenizer import TextTokenizer
from mlperf_track.errors import ConfigError, DataError
from mlperf_track.spec import check_positive_int

logger = logging.getLogger(__name__)

LM_CORPUS: Final = "pydoc-topics"
CLASSIFICATION_TASK: Final = "stdlib-docstrings"
SYNTHETIC: Final = "synthetic"
AUTO: Final = "auto"
#: The references of the text datasets (``synthetic`` is the image registry's too).
TEXT_DATASETS: Final = (LM_CORPUS, CLASSIFICATION_TASK)
#: The dataset each kind of model takes.
DATASETS_BY_KIND: Final = {"decoder": (LM_CORPUS, SYNTHETIC), "encoder": (CLASSIFICATION_TASK, SYNTHETIC)}
#: Length of the windows quality is trained and scored on (shortened to what the model accepts): 128 tokens
#: of context for language modelling; 64 for classification, which gives the evaluation split about 300
#: windows (the accuracy intervals' sample) where 128 would give 150.
QUALITY_SEQ_LEN: Final = {"decoder": 128, "encoder": 64}


@dataclass
class TextDataset(DatasetSplits):
    """Token windows of a text dataset (see the module docstring).

    Attributes:
        holdout: Windows for early stopping, or ``None``.
        kind: ``decoder`` (language modelling) or ``encoder`` (classification).
        tokenizer: The tokenizer's name.
    """

    holdout: Dataset | None = None
    kind: str = "decoder"
    tokenizer: str = ""

    @property
    def seq_len(self) -> int:
        """Tokens per window (the model's input length)."""
        return self.image_size


def resolve_text_dataset(ref: str, kind: str) -> str:
    """The dataset reference for a ``kind`` model: ``auto`` picks its default; a wrong one is bad input.

    Raises:
        ConfigError: ``ref`` is not a dataset a ``kind`` model can use.
    """
    allowed = DATASETS_BY_KIND[kind]
    if ref.strip() in (AUTO, ""):
        return allowed[0]
    if ref.strip() not in allowed:
        raise ConfigError("dataset", ref, [*allowed, AUTO], hint=f"what a text {kind} model reads")
    return ref.strip()


def _windows(tokens: list[int], length: int) -> torch.Tensor:
    count = len(tokens) // length
    return torch.tensor(tokens[: count * length], dtype=torch.int64).view(count, length)


def _lm_split(documents: list[Document], tokenizer: TextTokenizer, seq_len: int) -> TensorDataset:
    stream: list[int] = []
    for ids in tokenizer.encode_batch([doc.text for doc in documents]):
        stream.extend([*ids, tokenizer.eos_id])
    windows = _windows(stream, seq_len + 1)
    return TensorDataset(windows[:, :-1].contiguous(), windows[:, 1:].contiguous())


def _classification_split(
    documents: list[Document], tokenizer: TextTokenizer, seq_len: int, num_classes: int
) -> TensorDataset:
    inputs, labels = [], []
    encoded = tokenizer.encode_batch([doc.text for doc in documents])
    for label in range(num_classes):
        stream: list[int] = []
        for doc, ids in zip(documents, encoded, strict=True):
            if doc.label == label:
                stream.extend([*ids, tokenizer.eos_id])
        windows = _windows(stream, seq_len - 1)
        cls = torch.full((windows.shape[0], 1), tokenizer.cls_id, dtype=torch.int64)
        inputs.append(torch.cat([cls, windows], dim=1))
        labels.append(torch.full((windows.shape[0],), label, dtype=torch.int64))
    return TensorDataset(torch.cat(inputs), torch.cat(labels))


def load_text_dataset(ref: str, *, kind: str, tokenizer: TextTokenizer, seq_len: int, seed: int = 0) -> TextDataset:
    """Tokenize and window a text dataset (see the module docstring).

    Args:
        ref: ``pydoc-topics``, ``stdlib-docstrings``, ``synthetic`` or ``auto``.
        kind: ``decoder`` or ``encoder``.
        tokenizer: The model's tokenizer.
        seq_len: Tokens per input window.
        seed: Seed of the document split.

    Raises:
        ConfigError: A dataset the model cannot use, or a bad ``seq_len``.
        DataError: A split has no whole window (the corpus is too short for ``seq_len``).
    """
    name = resolve_text_dataset(ref, kind)
    check_positive_int("seq_len", seq_len)
    if name == SYNTHETIC:
        return TextDataset(name=name, image_size=seq_len, kind=kind, tags={"dataset.note": "synthetic: no quality"})
    class_names: list[str] = []
    if name == LM_CORPUS:
        documents = pydoc_topics()
    else:
        documents, class_names = docstring_task()
    by_split = {
        split: [doc for doc in documents if split_of(doc.origin, seed) == split]
        for split in ("train", "holdout", "eval")
    }
    if name == LM_CORPUS:
        splits = {split: _lm_split(docs, tokenizer, seq_len) for split, docs in by_split.items()}
    else:
        splits = {
            split: _classification_split(docs, tokenizer, seq_len, len(class_names)) for split, docs in by_split.items()
        }
    for split, dataset in splits.items():
        if len(dataset) == 0:
            raise DataError(f"{name}: the {split} split has no window of {seq_len} tokens")
    sizes = {split: len(dataset) for split, dataset in splits.items()}
    logger.info("%s at %d tokens (%s): %s windows", name, seq_len, tokenizer.name, sizes)
    return TextDataset(
        name=name,
        image_size=seq_len,
        num_classes=len(class_names) or None,
        train=splits["train"],
        val=splits["eval"],
        holdout=splits["holdout"],
        class_names=class_names,
        kind=kind,
        tokenizer=tokenizer.name,
        tags={
            "dataset.seq_len": str(seq_len),
            "dataset.tokenizer": tokenizer.name,
            "dataset.train_size": str(sizes["train"]),
            "dataset.holdout_size": str(sizes["holdout"]),
            "dataset.val_size": str(sizes["eval"]),
            "dataset.split_seed": str(seed),
            "dataset.unit": "windows of tokens",
        },
    )
