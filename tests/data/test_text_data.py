"""Text that ships with Python: the pydoc corpus, the docstring task, the corpus tokenizer and the windows."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mlperf_track.data.text import (
    CLASSIFICATION_TASK,
    LM_CORPUS,
    load_text_dataset,
    resolve_text_dataset,
)
from mlperf_track.data.text_corpus import docstring_task, pydoc_topics, split_of
from mlperf_track.data.text_tokenizer import corpus_tokenizer
from mlperf_track.errors import ConfigError, DataError

pytest.importorskip("tokenizers")


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):
    return corpus_tokenizer(1024, tmp_path_factory.mktemp("tok"))


def test_the_corpus_is_real_text_split_by_document_with_every_split_used() -> None:
    documents = pydoc_topics()
    assert sum(len(doc.text) for doc in documents) > 400_000
    splits = {split_of(doc.origin, 0) for doc in documents}
    assert splits == {"train", "holdout", "eval"}
    assert len({doc.origin for doc in documents}) == len(documents)
    # Another seed moves documents between splits; the same seed never does.
    assert [split_of(doc.origin, 0) for doc in documents] == [split_of(doc.origin, 0) for doc in documents]
    assert [split_of(doc.origin, 0) for doc in documents] != [split_of(doc.origin, 1) for doc in documents]


def test_the_docstring_task_has_labelled_classes_read_without_importing() -> None:
    documents, names = docstring_task()
    assert len(names) >= 2 and "email" in names
    counts = torch.bincount(torch.tensor([doc.label for doc in documents]))
    assert len(counts) == len(names) and int(counts.min()) >= 50


def test_the_corpus_tokenizer_is_cached_and_reserves_the_special_ids(tmp_path: Path) -> None:
    first = corpus_tokenizer(512, tmp_path)
    files = list((tmp_path / "tokenizers").glob("*.json"))
    assert len(files) == 1
    second = corpus_tokenizer(512, tmp_path)
    assert (first.pad_id, first.eos_id, first.cls_id) == (0, 2, 3)
    text = ["def f(x):\n    return x  # any text encodes: é ✓"]
    assert first.encode_batch(text) == second.encode_batch(text)
    assert max(first.encode_batch(text)[0]) < first.vocab_size <= 512


def test_a_tokenizer_too_small_for_byte_level_bpe_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="at least"):
        corpus_tokenizer(100, tmp_path)


def test_language_model_windows_pair_inputs_with_their_next_tokens(tokenizer) -> None:
    data = load_text_dataset("auto", kind="decoder", tokenizer=tokenizer, seq_len=32)
    assert data.name == LM_CORPUS and data.num_classes is None and not data.has_labels
    inputs, targets = data.train[0]
    assert inputs.shape == targets.shape == (32,) and inputs.dtype == torch.int64
    assert torch.equal(inputs[1:], targets[:-1])
    assert len(data.val) > 0 and len(data.holdout) > 0


def test_classification_windows_start_with_cls_and_cover_every_class(tokenizer) -> None:
    data = load_text_dataset("auto", kind="encoder", tokenizer=tokenizer, seq_len=48)
    assert data.name == CLASSIFICATION_TASK and data.has_labels
    ids, labels = data.val.tensors
    assert ids.shape[1] == 48 and bool((ids[:, 0] == tokenizer.cls_id).all())
    assert set(labels.tolist()) == set(range(data.num_classes))


def test_a_dataset_the_model_cannot_use_is_one_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"invalid dataset='digits'.*stdlib-docstrings"):
        resolve_text_dataset("digits", "encoder")
    with pytest.raises(ConfigError, match="pydoc-topics"):
        resolve_text_dataset("stdlib-docstrings", "decoder")
    assert resolve_text_dataset("synthetic", "decoder") == "synthetic"


def test_a_model_folder_tokenizer_is_used_as_saved(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    from mlperf_track.data.text_tokenizer import folder_tokenizer

    corpus = corpus_tokenizer(400, tmp_path / "cache")
    trained = transformers.PreTrainedTokenizerFast(
        tokenizer_file=str(next((tmp_path / "cache" / "tokenizers").glob("*.json"))),
        pad_token="<pad>",
        eos_token="<eos>",
        cls_token="<cls>",
    )
    trained.save_pretrained(tmp_path / "model")
    folder = folder_tokenizer(str(tmp_path / "model"))
    assert (folder.pad_id, folder.eos_id, folder.cls_id) == (0, 2, 3)
    text = ["return the value of x"]
    assert folder.encode_batch(text) == corpus.encode_batch(text)
    data = load_text_dataset("pydoc-topics", kind="decoder", tokenizer=folder, seq_len=16)
    assert int(data.train.tensors[0].max()) < folder.vocab_size
