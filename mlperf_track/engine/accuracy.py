"""Top-1/top-5 accuracy of any predict function on a labelled split, and a paired comparison with a reference.

The engine measures callables, so accuracy is measured the same way: ``predict(images) -> logits`` for a
float32 NCHW CPU batch. A runtime's :meth:`PreparedModel.predict` fits, and so does :func:`module_predictor`
for a plain module. This module never imports mlflow or optuna.

Against a reference (the baseline, on the same evaluation images) a report carries the top-1 delta and the
top-1 agreement, each with a 95% confidence interval, and a verdict on the delta
(:func:`~mlperf_track.engine.paired.compare_paired`): ``no measurable change`` whenever the delta's interval
contains 0, else ``loss`` or ``gain``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mlperf_track import metrics
from mlperf_track.engine.paired import PairedComparison, compare_paired
from mlperf_track.errors import DataError, MeasurementError
from mlperf_track.spec import check_positive_int

logger = logging.getLogger(__name__)

#: ``predict(images) -> logits``: float32 ``(N, 3, H, W)`` on the CPU in, ``(N, classes)`` logits out.
Predict = Callable[[torch.Tensor], torch.Tensor]

#: Top-5 accuracy is reported only when the model predicts at least this many classes.
TOP5_MIN_CLASSES = 5


@dataclass(frozen=True)
class AccuracyReport:
    """Accuracy of one model on one split.

    Attributes:
        top1: Fraction of samples whose highest logit is the label.
        top5: Fraction whose label is among the five highest logits; ``None`` with fewer than 5 classes.
        predictions: Predicted class (argmax) of every sample, in dataset order, ``int64`` of shape ``(N,)``.
        top1_delta: ``top1 - reference.top1`` when a reference was given.
        agreement: Fraction of samples whose prediction equals the reference's, when a reference was given.
        correct: Whether each sample's top-1 prediction is its label, ``bool`` of shape ``(N,)``, when known
            (the paired intervals need it on both sides).
        comparison: The paired comparison with the reference (intervals, verdict), when both reports know
            their per-sample correctness.
    """

    top1: float
    top5: float | None
    predictions: torch.Tensor
    top1_delta: float | None = None
    agreement: float | None = None
    correct: torch.Tensor | None = None
    comparison: PairedComparison | None = None

    @property
    def samples(self) -> int:
        """Number of evaluated samples."""
        return int(self.predictions.numel())

    def metrics(self) -> dict[str, float]:
        """The report as MLflow metrics (:mod:`mlperf_track.metrics` keys); absent values are left out."""
        values = {
            metrics.ACCURACY_TOP1: self.top1,
            metrics.ACCURACY_TOP5: self.top5,
            metrics.ACCURACY_TOP1_DELTA: self.top1_delta,
            metrics.ACCURACY_AGREEMENT: self.agreement,
        }
        found = {key: float(value) for key, value in values.items() if value is not None}
        return {**found, **(self.comparison.metrics() if self.comparison is not None else {})}

    def tags(self) -> dict[str, str]:
        """``accuracy.verdict`` and ``accuracy.ci_method`` when compared with a reference, else nothing."""
        return self.comparison.tags() if self.comparison is not None else {}


def evaluate_accuracy(
    predict: Predict,
    dataset: Dataset,
    *,
    batch_size: int = 64,
    reference: AccuracyReport | None = None,
) -> AccuracyReport:
    """Run ``predict`` over ``dataset`` in order and count correct predictions.

    Args:
        predict: Maps a float32 CPU batch to logits of shape ``(batch, classes)``.
        dataset: Items ``(image, label)`` (a :class:`DatasetSplits` split).
        batch_size: Samples per call.
        reference: The baseline's report on the same split; adds ``top1_delta`` and ``agreement``.

    Returns:
        The report.

    Raises:
        DataError: The dataset is empty, or ``reference`` was computed on a split of another size.
        MeasurementError: ``predict`` returned something that is not a ``(batch, classes)`` tensor.
    """
    check_positive_int("batch_size", batch_size)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    predictions: list[torch.Tensor] = []
    correct: list[torch.Tensor] = []
    top1_hits = top5_hits = total = 0
    num_classes: int | None = None
    for images, batch_labels in loader:
        logits = _check_logits(predict(images), len(batch_labels))
        labels = torch.as_tensor(batch_labels, dtype=torch.int64).cpu()
        num_classes = logits.shape[1]
        predicted = logits.argmax(dim=1)
        predictions.append(predicted)
        correct.append(predicted == labels)
        top1_hits += int(correct[-1].sum())
        if num_classes >= TOP5_MIN_CLASSES:
            top5 = logits.topk(TOP5_MIN_CLASSES, dim=1).indices
            top5_hits += int((top5 == labels.unsqueeze(1)).any(dim=1).sum())
        total += len(labels)
    if total == 0:
        raise DataError("cannot measure accuracy on an empty split")
    all_predictions = torch.cat(predictions)
    top1 = top1_hits / total
    report = AccuracyReport(
        top1=top1,
        top5=top5_hits / total if num_classes is not None and num_classes >= TOP5_MIN_CLASSES else None,
        predictions=all_predictions,
        correct=torch.cat(correct),
    )
    if reference is not None:
        report = _compare(report, reference)
    logger.debug("accuracy on %d samples: top-1 %.4f", total, top1)
    return report


def _check_logits(output: object, batch: int) -> torch.Tensor:
    if not isinstance(output, torch.Tensor) or output.dim() != 2 or output.shape[0] != batch:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise MeasurementError(f"predict must return logits of shape (batch={batch}, classes), got {shape}")
    return output.detach().float().cpu()


def _compare(report: AccuracyReport, reference: AccuracyReport) -> AccuracyReport:
    if reference.samples != report.samples:
        raise DataError(
            f"the reference accuracy covers {reference.samples} samples but this split has {report.samples}: "
            "evaluate both on the same split"
        )
    agreement = float((report.predictions == reference.predictions).float().mean())
    comparison = None
    if report.correct is not None and reference.correct is not None:
        comparison = compare_paired(report.correct, reference.correct, report.predictions, reference.predictions)
    else:
        logger.debug("no paired intervals: the reference report does not know its per-sample correctness")
    return AccuracyReport(
        top1=report.top1,
        top5=report.top5,
        predictions=report.predictions,
        top1_delta=report.top1 - reference.top1,
        agreement=agreement,
        correct=report.correct,
        comparison=comparison,
    )


def module_predictor(module: nn.Module, *, device: str = "cpu") -> Predict:
    """A predict function for a plain module: casts inputs to the module's floating dtype, returns fp32 CPU logits.

    Args:
        module: The model (already on ``device``); it is put in eval mode.
        device: Where the module lives.
    """
    module.eval()
    dtype = next((param.dtype for param in module.parameters() if param.is_floating_point()), torch.float32)

    def predict(images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return module(images.to(device=device, dtype=dtype)).float().cpu()

    return predict
