"""evaluate_accuracy: top-1/top-5 counting, the reference comparison, and bad input."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from mlperf_track import metrics
from mlperf_track.engine.accuracy import AccuracyReport, evaluate_accuracy, module_predictor
from mlperf_track.errors import ConfigError, DataError, MeasurementError


def _dataset(labels: list[int], size: int = 4) -> TensorDataset:
    # The image carries its sample index in pixel (0, 0, 0), so a predict function can look it up.
    images = torch.zeros(len(labels), 3, size, size)
    images[:, 0, 0, 0] = torch.arange(len(labels), dtype=torch.float32)
    return TensorDataset(images, torch.tensor(labels))


def _lookup(table: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    def predict(images: torch.Tensor) -> torch.Tensor:
        return table[images[:, 0, 0, 0].long()]

    return predict


def test_top1_and_top5_are_counted_per_sample() -> None:
    labels = [0, 1, 2, 3, 4, 5]
    logits = torch.zeros(6, 10)
    # Samples 0-2 right; sample 3's label is 2nd best, sample 4's label is 7th best, sample 5's 5th best.
    for index in range(3):
        logits[index, labels[index]] = 5.0
    logits[3, 9], logits[3, 3] = 5.0, 4.0
    logits[4, 4] = -1.0
    logits[5, [6, 7, 8, 9]] = torch.tensor([5.0, 4.0, 3.0, 2.0])
    logits[5, 5] = 1.0
    report = evaluate_accuracy(_lookup(logits), _dataset(labels), batch_size=4)
    assert report.top1 == pytest.approx(3 / 6)
    assert report.top5 == pytest.approx(5 / 6)
    assert report.predictions.tolist() == [0, 1, 2, 9, 0, 6]
    assert report.samples == 6
    assert report.metrics() == {metrics.ACCURACY_TOP1: pytest.approx(0.5), metrics.ACCURACY_TOP5: pytest.approx(5 / 6)}


def test_top5_is_absent_with_fewer_than_five_classes() -> None:
    logits = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    report = evaluate_accuracy(_lookup(logits), _dataset([0, 2]))
    assert report.top1 == 0.5
    assert report.top5 is None
    assert metrics.ACCURACY_TOP5 not in report.metrics()


def test_reference_adds_delta_and_agreement() -> None:
    labels = [0, 1, 2, 3]
    reference_logits = torch.eye(4)[[0, 1, 2, 0]]  # predicts 0,1,2,0: top-1 0.75
    candidate_logits = torch.eye(4)[[0, 1, 1, 3]]  # predicts 0,1,1,3: top-1 0.75, agrees on 2 of 4
    dataset = _dataset(labels)
    reference = evaluate_accuracy(_lookup(reference_logits), dataset)
    report = evaluate_accuracy(_lookup(candidate_logits), dataset, batch_size=3, reference=reference)
    assert report.top1_delta == pytest.approx(0.0)
    assert report.agreement == pytest.approx(0.5)
    worse = evaluate_accuracy(_lookup(torch.eye(4)[[1, 1, 1, 1]]), dataset, reference=reference)
    assert worse.top1_delta == pytest.approx(0.25 - 0.75)
    assert worse.metrics()[metrics.ACCURACY_AGREEMENT] == pytest.approx(0.25)
    assert set(worse.metrics()) == {
        metrics.ACCURACY_TOP1,
        metrics.ACCURACY_TOP1_DELTA,
        metrics.ACCURACY_AGREEMENT,
        metrics.ACCURACY_TOP1_DELTA_CI_LOW,
        metrics.ACCURACY_TOP1_DELTA_CI_HIGH,
        metrics.ACCURACY_AGREEMENT_CI_LOW,
        metrics.ACCURACY_AGREEMENT_CI_HIGH,
    }
    # Two images lost, none gained, out of four: far too few to call it a loss.
    assert worse.tags()[metrics.ACCURACY_VERDICT_TAG] == metrics.VERDICT_NO_CHANGE
    assert (
        worse.metrics()[metrics.ACCURACY_TOP1_DELTA_CI_LOW]
        < -0.5
        < 0
        < worse.metrics()[metrics.ACCURACY_TOP1_DELTA_CI_HIGH]
    )


def test_a_reference_without_per_sample_correctness_gives_no_intervals() -> None:
    labels = [0, 1, 2, 3]
    reference = AccuracyReport(top1=0.75, top5=None, predictions=torch.tensor([0, 1, 2, 0]))
    report = evaluate_accuracy(_lookup(torch.eye(4)), _dataset(labels), reference=reference)
    assert report.top1_delta == pytest.approx(0.25) and report.comparison is None
    assert metrics.ACCURACY_TOP1_DELTA_CI_LOW not in report.metrics() and report.tags() == {}


def test_identical_predictions_have_a_zero_width_delta_interval() -> None:
    logits = torch.eye(5)[[0, 1, 2, 3, 4, 0, 1, 2]]
    dataset = _dataset([0, 1, 2, 3, 4, 4, 4, 4])
    reference = evaluate_accuracy(_lookup(logits), dataset)
    report = evaluate_accuracy(_lookup(logits.clone()), dataset, batch_size=3, reference=reference)
    values = report.metrics()
    assert values[metrics.ACCURACY_TOP1_DELTA] == 0.0
    assert values[metrics.ACCURACY_TOP1_DELTA_CI_LOW] == 0.0 == values[metrics.ACCURACY_TOP1_DELTA_CI_HIGH]
    assert values[metrics.ACCURACY_AGREEMENT] == 1.0 == values[metrics.ACCURACY_AGREEMENT_CI_HIGH]
    assert 0.5 < values[metrics.ACCURACY_AGREEMENT_CI_LOW] < 1.0  # 8 images cannot prove perfect agreement
    assert report.tags()[metrics.ACCURACY_VERDICT_TAG] == metrics.VERDICT_NO_CHANGE


def test_a_clearly_worse_predictor_has_its_whole_interval_below_zero() -> None:
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (400,), generator=generator)
    right = torch.nn.functional.one_hot(labels, 10).float()
    wrong = torch.nn.functional.one_hot((labels + 1) % 10, 10).float()
    # The reference gets 95% right; the candidate loses 40 of those images and gains none.
    reference_logits = right.clone()
    reference_logits[:20] = wrong[:20]
    candidate_logits = reference_logits.clone()
    candidate_logits[20:60] = wrong[20:60]
    dataset = _dataset(labels.tolist())
    reference = evaluate_accuracy(_lookup(reference_logits), dataset)
    report = evaluate_accuracy(_lookup(candidate_logits), dataset, reference=reference)
    values = report.metrics()
    assert values[metrics.ACCURACY_TOP1_DELTA] == pytest.approx(-0.1)
    low, high = values[metrics.ACCURACY_TOP1_DELTA_CI_LOW], values[metrics.ACCURACY_TOP1_DELTA_CI_HIGH]
    assert low < -0.1 < high < 0
    assert report.tags()[metrics.ACCURACY_VERDICT_TAG] == metrics.VERDICT_LOSS
    agree_low, agree_high = values[metrics.ACCURACY_AGREEMENT_CI_LOW], values[metrics.ACCURACY_AGREEMENT_CI_HIGH]
    assert values[metrics.ACCURACY_AGREEMENT] == pytest.approx(0.9)
    assert agree_low < 0.9 < agree_high


def test_reference_of_another_split_is_refused() -> None:
    reference = AccuracyReport(top1=1.0, top5=None, predictions=torch.zeros(3, dtype=torch.int64))
    with pytest.raises(DataError, match="same split"):
        evaluate_accuracy(_lookup(torch.eye(2)), _dataset([0, 1]), reference=reference)


def test_empty_split_is_a_data_error() -> None:
    with pytest.raises(DataError, match="empty"):
        evaluate_accuracy(_lookup(torch.eye(2)), _dataset([]))


@pytest.mark.parametrize("output", [torch.zeros(5), torch.zeros(3, 2), "logits"])
def test_predict_must_return_batch_by_classes(output: object) -> None:
    with pytest.raises(MeasurementError, match="logits of shape"):
        evaluate_accuracy(lambda images: output, _dataset([0, 1]), batch_size=2)  # type: ignore[arg-type,return-value]


def test_batch_size_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="batch_size"):
        evaluate_accuracy(_lookup(torch.eye(2)), _dataset([0, 1]), batch_size=0)


def test_module_predictor_casts_inputs_and_returns_float32() -> None:
    torch.manual_seed(0)
    module = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 3)).to(torch.bfloat16).train()
    predict = module_predictor(module)
    logits = predict(torch.randn(2, 3, 4, 4))
    assert logits.dtype == torch.float32 and logits.shape == (2, 3)
    assert not module.training
