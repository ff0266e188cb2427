"""Quality of a language model on token windows: perplexity, next-token accuracy, agreement with a reference.

Like :mod:`.accuracy`, quality is measured through a predict function: ``predict(ids) -> logits`` with ids
``(batch, seq)`` int64 on the CPU and next-token logits ``(batch, seq, vocab)`` back. A runtime's
``PreparedModel.predict`` fits, so every variant and runtime is scored on the same windows.

Paired intervals: a candidate and its reference see the same evaluation windows, and tokens inside a window
are not independent, so the window is the unit. The perplexity delta's interval comes from the per-window
differences of mean log-likelihood (a t interval over the windows, mapped through ``exp`` onto the perplexity
scale with the reference's perplexity fixed); the agreement's from the per-window agreement rates (a t
interval, or, when every window agrees completely, Wilson's interval over the windows, so a perfect score
still says how much disagreement the windows could have missed).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset

from mlperf_track import metrics
from mlperf_track.errors import DataError, MeasurementError

#: ``predict(ids) -> logits``: ``(N, S)`` int64 in, ``(N, S, vocab)`` float logits out.
PredictTokens = Callable[[torch.Tensor], torch.Tensor]
CONFIDENCE = 0.95


@dataclass(frozen=True)
class LanguageModelReport:
    """Per-window results of a language model on evaluation windows.

    Attributes:
        window_nll: Mean negative log-likelihood of each window's tokens (nats), ``(W,)`` float64.
        predictions: Most likely next token at every position, ``(W, S)`` int64.
        correct: Whether that token is the true next token, ``(W, S)`` bool.
    """

    window_nll: torch.Tensor
    predictions: torch.Tensor
    correct: torch.Tensor

    @property
    def perplexity(self) -> float:
        """``exp`` of the mean negative log-likelihood over every token (windows have equal lengths)."""
        return math.exp(float(self.window_nll.mean()))

    @property
    def next_token_top1(self) -> float:
        """Share of positions whose most likely token is the true next token."""
        return float(self.correct.float().mean())


def evaluate_language_model(predict: PredictTokens, dataset: Dataset, *, batch_size: int = 8) -> LanguageModelReport:
    """Run ``predict`` over windows ``(inputs, targets)`` in order and score every position.

    Raises:
        DataError: The dataset is empty.
        MeasurementError: ``predict`` returned something that is not ``(batch, seq, vocab)`` logits.
    """
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    nll, predictions, correct = [], [], []
    for inputs, targets in loader:
        logits = predict(inputs)
        if not isinstance(logits, torch.Tensor) or logits.dim() != 3 or logits.shape[:2] != targets.shape:
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise MeasurementError(
                f"predict must return logits (batch, seq, vocab) for {tuple(targets.shape)}, got {shape}"
            )
        log_probs = torch.log_softmax(logits.detach().double().cpu(), dim=-1)
        token_nll = -log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        nll.append(token_nll.mean(dim=1))
        predicted = log_probs.argmax(dim=-1)
        predictions.append(predicted)
        correct.append(predicted == targets)
    if not nll:
        raise DataError("cannot score a language model on an empty split")
    return LanguageModelReport(torch.cat(nll), torch.cat(predictions), torch.cat(correct))


def _window_rate(flags: torch.Tensor) -> torch.Tensor:
    """Per-window share of true ``(W, S)`` flags, float64."""
    return flags.double().mean(dim=1)


def _t_interval(values: torch.Tensor) -> tuple[float, float, float]:
    """Mean of ``values`` and its two-sided t interval at :data:`CONFIDENCE`."""
    from scipy.stats import t

    count = values.numel()
    mean = float(values.mean())
    if count < 2:
        return mean, -math.inf, math.inf
    half = float(t.ppf(0.5 + CONFIDENCE / 2, count - 1)) * float(values.std(unbiased=True)) / math.sqrt(count)
    return mean, mean - half, mean + half


def _wilson(successes: int, trials: int) -> tuple[float, float]:
    from scipy.stats import binomtest

    interval = binomtest(successes, trials).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return float(interval.low), float(interval.high)


def language_model_metrics(
    report: LanguageModelReport, reference: LanguageModelReport | None = None
) -> dict[str, float]:
    """``accuracy/perplexity`` and ``accuracy/next_token_top1``; with a reference on the same windows, also the
    perplexity delta, the next-token top-1 delta, the next-token agreement and their paired 95% intervals.

    Raises:
        DataError: ``reference`` was computed on other windows.
    """
    values = {metrics.ACCURACY_PERPLEXITY: report.perplexity, metrics.ACCURACY_NEXT_TOKEN_TOP1: report.next_token_top1}
    if reference is None:
        return values
    if reference.predictions.shape != report.predictions.shape:
        raise DataError(
            f"the reference was scored on windows {tuple(reference.predictions.shape)}, these are "
            f"{tuple(report.predictions.shape)}: score both on the same split"
        )
    base = reference.perplexity
    _, low, high = _t_interval(report.window_nll - reference.window_nll)
    _, c_low, c_high = _t_interval(_window_rate(report.correct) - _window_rate(reference.correct))
    same = report.predictions == reference.predictions
    per_window = same.float().mean(dim=1).double()
    _, a_low, a_high = _t_interval(per_window)
    if bool(same.all()) or not math.isfinite(a_low):
        windows = int(per_window.numel())
        a_low, a_high = _wilson(int((per_window == 1).sum()), windows)
    values.update(
        {
            metrics.ACCURACY_PERPLEXITY_DELTA: report.perplexity - base,
            metrics.ACCURACY_PERPLEXITY_DELTA_CI_LOW: base * math.expm1(low) if math.isfinite(low) else -math.inf,
            metrics.ACCURACY_PERPLEXITY_DELTA_CI_HIGH: base * math.expm1(high) if math.isfinite(high) else math.inf,
            metrics.ACCURACY_NEXT_TOKEN_TOP1_DELTA: report.next_token_top1 - reference.next_token_top1,
            metrics.ACCURACY_NEXT_TOKEN_TOP1_DELTA_CI_LOW: c_low,
            metrics.ACCURACY_NEXT_TOKEN_TOP1_DELTA_CI_HIGH: c_high,
            metrics.ACCURACY_NEXT_TOKEN_AGREEMENT: float(same.float().mean()),
            metrics.ACCURACY_NEXT_TOKEN_AGREEMENT_CI_LOW: max(0.0, a_low),
            metrics.ACCURACY_NEXT_TOKEN_AGREEMENT_CI_HIGH: min(1.0, a_high),
        }
    )
    return {key: value for key, value in values.items() if math.isfinite(value)}
