"""Paired comparison of two classifiers on the same evaluation images: delta and agreement with 95% intervals.

Both predictors see the same images, so their accuracies are not independent and the comparison must be
paired. Only the *discordant* images, the ``b`` the reference gets right and the candidate wrong and the
``c`` the other way round, carry information about the delta ``(c - b) / n``; that is McNemar's test, the
standard test for two classifiers on one test set (Dietterich, 1998).

**Delta interval: exact conditional McNemar, widened by Bonett-Price.** Given the ``m = b + c`` discordant
images, ``c ~ Binomial(m, pi)`` and the delta is ``(m / n)(2 pi - 1)``; the Clopper-Pearson interval for
``pi`` maps to an interval for the delta that excludes 0 exactly when the exact (central) McNemar test
rejects "no difference" at the 5% level. Conditioning on ``m`` treats the number of discordant images as
fixed, though, so when one side wins nearly all of them the bound away from 0 collapses onto the estimate
(10 images lost, none gained: [-10, -3.8] images). The reported interval is therefore the union of that
one and the Bonett-Price adjusted Wald interval for paired proportions (2012; recommended with Tango's
and Newcombe's by Fagerland, Lydersen and Laake, 2014), which lets ``m`` vary: -10 / +0 becomes
[-16.6, -3.3] images. A union of two 95% intervals covers at least 95%, and its verdict is never bolder
than the exact McNemar test's. Chosen over a paired bootstrap because the discordant images are few here
(0-20 of 359 on ``digits``), where the bootstrap's percentile interval is too narrow: with 4 images lost
and none gained it already excludes 0 although the exact probability of so lopsided a split by chance is
0.125, and the verdict would call noise a loss. It is also deterministic (no seed, no resampling). With no
discordant image the interval is [0, 0]: on these images the two predictors cannot be told apart, and how
much disagreement the split could have missed is what the agreement interval says.

**Agreement interval: Wilson score.** Agreement is a plain proportion of images; Wilson's interval keeps
close to its nominal coverage near 1, where the normal approximation collapses to a zero width (Brown, Cai
and DasGupta, 2001). At 100% agreement its lower bound (0.989 for 359 images) says how much disagreement
the evaluation split could have missed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mlperf_track import metrics
from mlperf_track.errors import DataError

#: Confidence level of every accuracy interval.
CONFIDENCE = 0.95
#: The ``accuracy.ci_method`` tag.
CI_METHOD = (
    "paired, 95%: delta = union of exact conditional McNemar (Clopper-Pearson) and Bonett-Price intervals; "
    "agreement = Wilson score"
)


@dataclass(frozen=True)
class PairedComparison:
    """A candidate against a reference on the same ``samples`` images.

    Attributes:
        samples: Number of images, ``n``.
        reference_only: Images the reference classifies right and the candidate wrong (``b``).
        candidate_only: Images the candidate classifies right and the reference wrong (``c``).
        delta: Candidate top-1 minus reference top-1, ``(c - b) / n``.
        delta_ci: 95% interval of the delta.
        agreement: Share of images with the same top-1 prediction.
        agreement_ci: 95% interval of the agreement.
    """

    samples: int
    reference_only: int
    candidate_only: int
    delta: float
    delta_ci: tuple[float, float]
    agreement: float
    agreement_ci: tuple[float, float]

    @property
    def verdict(self) -> str:
        """:data:`~mlperf_track.metrics.VERDICT_NO_CHANGE` when the delta's interval contains 0, else loss/gain."""
        return delta_verdict(self.delta_ci)

    def metrics(self) -> dict[str, float]:
        """The four interval bounds as MLflow metrics."""
        return {
            metrics.ACCURACY_TOP1_DELTA_CI_LOW: self.delta_ci[0],
            metrics.ACCURACY_TOP1_DELTA_CI_HIGH: self.delta_ci[1],
            metrics.ACCURACY_AGREEMENT_CI_LOW: self.agreement_ci[0],
            metrics.ACCURACY_AGREEMENT_CI_HIGH: self.agreement_ci[1],
        }

    def tags(self) -> dict[str, str]:
        """``accuracy.verdict`` and ``accuracy.ci_method``."""
        return {metrics.ACCURACY_VERDICT_TAG: self.verdict, metrics.ACCURACY_CI_METHOD_TAG: CI_METHOD}


def delta_verdict(interval: tuple[float, float]) -> str:
    """``no measurable change`` when ``interval`` contains 0 (bounds included), ``loss`` below it, ``gain`` above."""
    low, high = interval
    if low > 0:
        return metrics.VERDICT_GAIN
    if high < 0:
        return metrics.VERDICT_LOSS
    return metrics.VERDICT_NO_CHANGE


def compare_paired(
    candidate_correct: torch.Tensor,
    reference_correct: torch.Tensor,
    candidate_predictions: torch.Tensor,
    reference_predictions: torch.Tensor,
) -> PairedComparison:
    """Compare per-image results of a candidate and a reference on the same images, in the same order.

    Args:
        candidate_correct: Whether the candidate's top-1 is right, per image (``bool`` ``(n,)``).
        reference_correct: The same for the reference.
        candidate_predictions: The candidate's top-1 class per image (``(n,)``).
        reference_predictions: The reference's.

    Raises:
        DataError: The tensors do not all have the same non-zero length.
    """
    n = int(candidate_correct.numel())
    sizes = {n, int(reference_correct.numel()), int(candidate_predictions.numel()), int(reference_predictions.numel())}
    if n == 0 or len(sizes) != 1:
        raise DataError(f"a paired comparison needs the same non-empty set of images on both sides, got sizes {sizes}")
    candidate, reference = candidate_correct.bool().view(-1), reference_correct.bool().view(-1)
    reference_only = int((reference & ~candidate).sum())
    candidate_only = int((candidate & ~reference).sum())
    agree = int((candidate_predictions.view(-1) == reference_predictions.view(-1)).sum())
    return PairedComparison(
        samples=n,
        reference_only=reference_only,
        candidate_only=candidate_only,
        delta=(candidate_only - reference_only) / n,
        delta_ci=delta_interval(reference_only, candidate_only, n),
        agreement=agree / n,
        agreement_ci=wilson_interval(agree, n),
    )


def delta_interval(reference_only: int, candidate_only: int, samples: int) -> tuple[float, float]:
    """95% interval of the paired top-1 delta: [0, 0] without discordant images, else the union of
    :func:`mcnemar_interval` and :func:`bonett_price_interval` (see the module docstring)."""
    if reference_only + candidate_only == 0:
        return 0.0, 0.0
    exact = mcnemar_interval(reference_only, candidate_only, samples)
    adjusted = bonett_price_interval(reference_only, candidate_only, samples)
    return min(exact[0], adjusted[0]), max(exact[1], adjusted[1])


def mcnemar_interval(reference_only: int, candidate_only: int, samples: int) -> tuple[float, float]:
    """Exact interval of the delta conditional on the discordant count (Clopper-Pearson on the split of it)."""
    from scipy.stats import binomtest

    discordant = reference_only + candidate_only
    if discordant == 0:
        return 0.0, 0.0
    interval = binomtest(candidate_only, discordant).proportion_ci(confidence_level=CONFIDENCE, method="exact")
    scale = discordant / samples
    return scale * (2 * interval.low - 1), scale * (2 * interval.high - 1)


def bonett_price_interval(reference_only: int, candidate_only: int, samples: int) -> tuple[float, float]:
    """Bonett and Price's (2012) adjusted Wald interval for a difference of paired proportions, within [-1, 1].

    One is added to each discordant count and two to the sample count before the Wald formula.
    """
    from scipy.stats import norm

    total = samples + 2
    p_reference = (reference_only + 1) / total
    p_candidate = (candidate_only + 1) / total
    estimate = p_candidate - p_reference
    spread = math.sqrt(max(p_reference + p_candidate - estimate**2, 0.0) / total)
    half = float(norm.ppf(0.5 + CONFIDENCE / 2)) * spread
    return max(estimate - half, -1.0), min(estimate + half, 1.0)


def wilson_interval(successes: int, trials: int) -> tuple[float, float]:
    """Wilson score 95% interval of ``successes / trials``."""
    from scipy.stats import binomtest

    interval = binomtest(successes, trials).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return float(interval.low), float(interval.high)
