"""Language-model quality: perplexity, next-token accuracy, and paired intervals against a reference."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import TensorDataset

from mlperf_track import metrics as m
from mlperf_track.engine.text_quality import evaluate_language_model, language_model_metrics
from mlperf_track.errors import DataError, MeasurementError

VOCAB = 50


def windows(count: int = 40, length: int = 12, seed: int = 0) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, VOCAB, (count, length + 1), generator=generator)
    return TensorDataset(tokens[:, :-1], tokens[:, 1:])


def uniform(ids: torch.Tensor) -> torch.Tensor:
    return torch.zeros(*ids.shape, VOCAB)


def oracle(data: TensorDataset, confidence: float):
    """Logits that put ``confidence`` of the mass on the true next token (looked up by input window)."""
    targets = {tuple(inputs.tolist()): target for inputs, target in zip(*data.tensors, strict=True)}

    def predict(ids: torch.Tensor) -> torch.Tensor:
        out = torch.full((*ids.shape, VOCAB), math.log((1 - confidence) / (VOCAB - 1)))
        for row, window in enumerate(ids):
            target = targets[tuple(window.tolist())]
            out[row].scatter_(1, target.unsqueeze(1), math.log(confidence))
        return out

    return predict


def test_a_uniform_model_has_the_vocabulary_as_perplexity() -> None:
    report = evaluate_language_model(uniform, windows())
    assert report.perplexity == pytest.approx(VOCAB)


def test_a_better_model_has_lower_perplexity_and_higher_next_token_accuracy() -> None:
    data = windows()
    good = evaluate_language_model(oracle(data, 0.9), data)
    assert good.perplexity == pytest.approx(math.exp(-math.log(0.9)), rel=1e-6)
    assert good.next_token_top1 == 1.0


def test_a_model_against_itself_has_zero_delta_and_full_agreement_with_a_wilson_bound() -> None:
    data = windows()
    report = evaluate_language_model(oracle(data, 0.5), data)
    values = language_model_metrics(report, report)
    assert values[m.ACCURACY_PERPLEXITY_DELTA] == 0
    assert values[m.ACCURACY_NEXT_TOKEN_AGREEMENT] == 1.0
    assert 0.85 < values[m.ACCURACY_NEXT_TOKEN_AGREEMENT_CI_LOW] < 1.0  # 40 windows cannot prove 100%


def test_a_worse_candidate_has_a_delta_interval_above_zero() -> None:
    data = windows()
    reference = evaluate_language_model(oracle(data, 0.9), data)
    candidate = evaluate_language_model(oracle(data, 0.5), data)
    values = language_model_metrics(candidate, reference)
    assert values[m.ACCURACY_PERPLEXITY_DELTA] == pytest.approx(2.0 - 1 / 0.9, rel=1e-6)
    assert 0 < values[m.ACCURACY_PERPLEXITY_DELTA_CI_LOW] <= values[m.ACCURACY_PERPLEXITY_DELTA] + 1e-9
    assert values[m.ACCURACY_PERPLEXITY_DELTA] <= values[m.ACCURACY_PERPLEXITY_DELTA_CI_HIGH] + 1e-9


def test_the_delta_interval_widens_with_the_spread_between_windows() -> None:
    data = windows()
    reference = evaluate_language_model(oracle(data, 0.9), data)
    half = oracle(data, 0.5)
    mixed_confidence = oracle(data, 0.8)

    def mixed(ids: torch.Tensor) -> torch.Tensor:  # some windows as good as the reference, some worse
        worse = half(ids)
        better = mixed_confidence(ids)
        pick = (ids[:, :1].sum(dim=1) % 2 == 0).view(-1, 1, 1)
        return torch.where(pick, worse, better)

    values = language_model_metrics(evaluate_language_model(mixed, data), reference)
    low, high = values[m.ACCURACY_PERPLEXITY_DELTA_CI_LOW], values[m.ACCURACY_PERPLEXITY_DELTA_CI_HIGH]
    assert low < values[m.ACCURACY_PERPLEXITY_DELTA] < high


def test_a_reference_on_other_windows_is_refused() -> None:
    reference = evaluate_language_model(uniform, windows(count=10))
    with pytest.raises(DataError, match="same split"):
        language_model_metrics(evaluate_language_model(uniform, windows(count=12)), reference)


def test_predict_must_return_per_position_logits() -> None:
    with pytest.raises(MeasurementError, match="batch, seq, vocab"):
        evaluate_language_model(lambda ids: torch.zeros(ids.shape[0], VOCAB), windows())


def test_the_next_token_top1_change_has_a_paired_interval_over_the_windows() -> None:
    data = windows()
    reference = evaluate_language_model(oracle(data, 0.9), data)
    assert language_model_metrics(reference, reference)[m.ACCURACY_NEXT_TOKEN_TOP1_DELTA_CI_LOW] == 0.0
    right = oracle(data, 0.9)

    def every_other_window_wrong(ids: torch.Tensor) -> torch.Tensor:
        logits = right(ids)
        wrong = (ids[:, 0] % 2 == 1).view(-1, 1, 1)
        return torch.where(wrong, -logits, logits)  # the true token becomes the least likely

    candidate = evaluate_language_model(every_other_window_wrong, data)
    values = language_model_metrics(candidate, reference)
    delta = values[m.ACCURACY_NEXT_TOKEN_TOP1_DELTA]
    assert delta == pytest.approx(candidate.next_token_top1 - 1.0) and delta < 0
    assert (
        values[m.ACCURACY_NEXT_TOKEN_TOP1_DELTA_CI_LOW] < delta < values[m.ACCURACY_NEXT_TOKEN_TOP1_DELTA_CI_HIGH] < 0
    )
