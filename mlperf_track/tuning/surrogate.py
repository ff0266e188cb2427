"""A small Bayesian model of a study's measurements, for the cost-aware sampler.

Why our own (about a hundred lines of numpy) instead of Optuna's GP or TPE: the space is one categorical over
configurations, and both of those treat two configurations as unrelated labels, so nothing learnt about
``openvino`` at fp32 informs ``openvino`` at bf16 or a pruned model on ``openvino``. Here a point is described
by what it is made of (:func:`features`): the steps of its variant (a composition shares the steps' effects),
its runtime, precision, runtime x precision, each searched runtime option, and its batch size and thread count
on a log scale (overall and per runtime, since batching helps eager PyTorch and OpenVINO differently), and the
configuration itself (a composition whose speed is not the sum of its steps' keeps its own level, which its
other batch sizes then share). A
Bayesian linear model over those features (:class:`BayesianLinear`: Gaussian prior on the weights, known noise,
closed-form posterior) gives every unmeasured point a mean and an uncertainty after a handful of trials, the
ingredients of expected improvement; the log scale makes effects multiplicative (``openvino`` is 2.5x faster),
which is how runtimes and precisions act on throughput and latency.

The prior is what a performance engineer expects before measuring anything (:func:`prior_means`), so the first
proposals go where the speed usually is rather than to the cheapest corner: throughput rises with the batch size
(per-call overheads amortise; the per-call latency rises instead), and a narrower precision does less work per
sample (only precisions the device computes natively are searched). Everything else starts at "no effect", and
the data override every prior within a few trials.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np

if TYPE_CHECKING:
    from mlperf_track.tuning.space import TrialPoint

#: Prior standard deviation of a weight, by feature kind, on the log scale (1.0 allows factors of ~e either way).
#: Calibrated on the two replay tables of ``benchmarks/search_efficiency.py`` (resnet18 and resnet50 at 64 px, 96
#: points each): the model fitted to every point of a table with wide priors gives weights whose root mean square
#: is, by kind, main effects 0.31-0.38 (largest 1.14: structured pruning, kept wide at 1.0 since a recipe or
#: runtime not measured yet can be anything), a runtime's option 0.29-0.43 (ONNX Runtime's graph level up to
#: 0.68) -> 0.5, the batch slope and curvature 0.39 -> 0.5, the other interactions (a runtime x precision, a
#: runtime's own batch or thread slope) 0.19-0.23 -> 0.3, a configuration's own level 0.20-0.22 -> 0.3. With the
#: wider priors first used (batch 1.0, interactions and configurations 0.5) every measured configuration's
#: batch size 1 looked worth a trial and the replayed resnet18 study needed 10 trials to reach 97% of the optimum
#: instead of 6.5. Threads are not in the tables: their slope keeps the main effects' 1.0.
PRIOR_SD: Final = {"main": 1.0, "option": 0.5, "batch": 0.5, "interaction": 0.3, "threads": 1.0, "configuration": 0.3}
#: Prefix of a configuration's own feature.
CONFIGURATION: Final = "configuration="
#: Prior mean of the batch-size weight (scaled feature: the whole searched range spans 2 units, so 0.5 expects
#: the largest batch to give e ~ 2.7x the smallest one's throughput); its sign flips for a latency objective.
BATCH_PRIOR_MEAN: Final = 0.5
#: Prior mean of a precision's weight per halving of the bits against fp32 (e^0.35 ~ 1.4x per halving: int8 ~2x).
PRECISION_PRIOR_PER_HALVING: Final = 0.35
#: Bits of each precision (tf32 keeps fp32's range with a 10-bit mantissa: 19 bits).
PRECISION_BITS: Final = {"fp32": 32, "tf32": 19, "fp16": 16, "bf16": 16, "fp8": 8, "int8": 8}


def _kind(name: str) -> str:
    if name.startswith(CONFIGURATION):
        return "configuration"
    if "|" in name:
        right = name.split("|", 1)[1]
        return "option" if "=" in right and not right.startswith("precision=") else "interaction"
    if "log_batch" in name:
        return "batch"
    if "log_threads" in name:
        return "threads"
    return "main"


def prior_means(names: Sequence[str], *, maximize: bool) -> np.ndarray:
    """The prior mean of each feature's weight (module docstring), on the scale of the target: ``log`` throughput
    when ``maximize``, ``-log`` latency otherwise."""
    means = np.zeros(len(names))
    for column, name in enumerate(names):
        if name == "log_batch":
            means[column] = BATCH_PRIOR_MEAN if maximize else -BATCH_PRIOR_MEAN
        elif name.startswith("precision="):
            bits = PRECISION_BITS.get(name.removeprefix("precision="), 32)
            means[column] = PRECISION_PRIOR_PER_HALVING * math.log2(32 / bits)
    return means


@dataclass(frozen=True)
class LogScale:
    """Maps a size (batch, threads) to ``[-1, 1]`` over the searched range on a log2 scale.

    Scaled, a weight's prior means the same whatever the range: with raw ``log2`` sizes centred on a 1..64 range
    the quadratic feature reaches 9 and a prior of 0.5 on its weight claimed factors of e^4.5 (90x) at the
    ends, so every runtime not yet measured looked 90x faster or slower and drew the early trials.
    """

    center: float = 0.0
    half_range: float = 1.0

    @classmethod
    def of(cls, sizes: Sequence[int]) -> LogScale:
        """The scale of the sizes searched (the identity for none)."""
        if not sizes:
            return cls()
        logs = [math.log2(size) for size in sizes]
        low, high = min(logs), max(logs)
        return cls((low + high) / 2, max((high - low) / 2, 1.0))

    def __call__(self, size: int) -> float:
        return (math.log2(size) - self.center) / self.half_range


def features(point: TrialPoint, batch: LogScale | None = None, threads: LogScale | None = None) -> dict[str, float]:
    """The features of ``point`` (names to values; absent features are 0); sizes on ``batch``'s and
    ``threads``' scales (raw log2 when ``None``)."""
    choice = point.choice
    runtime = f"runtime={choice.runtime}"
    found: dict[str, float] = {"bias": 1.0, runtime: 1.0, f"precision={choice.precision}": 1.0}
    found[f"{runtime}|precision={choice.precision}"] = 1.0
    if choice.variant != "baseline":
        for step in choice.variant.split("+"):
            found[f"variant={step}"] = 1.0
    for key, value in choice.options:
        found[f"{runtime}|{key}={value}"] = 1.0
    found[f"{CONFIGURATION}{choice.key}"] = 1.0
    batch_size = (batch or LogScale())(point.batch_size)
    found["log_batch"] = batch_size
    found["log_batch^2"] = batch_size * batch_size
    found[f"{runtime}|log_batch"] = batch_size
    found[f"{runtime}|log_batch^2"] = batch_size * batch_size
    if point.num_threads is not None:
        thread_count = (threads or LogScale())(point.num_threads)
        found["log_threads"] = thread_count
        found[f"{runtime}|log_threads"] = thread_count
    return found


class FeatureMap:
    """Turns points into rows of a design matrix over a fixed list of feature names.

    Args:
        points: Every point of the space (fixes the names and the log-scale centres).
    """

    def __init__(self, points: Sequence[TrialPoint]) -> None:
        self.batch_scale = LogScale.of([point.batch_size for point in points])
        self.threads_scale = LogScale.of([point.num_threads for point in points if point.num_threads is not None])
        names: dict[str, None] = {}
        for point in points:
            names.update(dict.fromkeys(self._features(point)))
        self.names = list(names)
        self.index = {name: i for i, name in enumerate(self.names)}
        self.prior_sd = np.array([PRIOR_SD[_kind(name)] if name != "bias" else 10.0 for name in self.names])

    def prior_mean(self, *, maximize: bool) -> np.ndarray:
        """The prior mean of every weight (:func:`prior_means`)."""
        return prior_means(self.names, maximize=maximize)

    def _features(self, point: TrialPoint) -> dict[str, float]:
        return features(point, self.batch_scale, self.threads_scale)

    def matrix(self, points: Sequence[TrialPoint]) -> np.ndarray:
        """One row per point."""
        rows = np.zeros((len(points), len(self.names)))
        for row, point in enumerate(points):
            for name, value in self._features(point).items():
                column = self.index.get(name)
                if column is not None:
                    rows[row, column] = value
        return rows


class BayesianLinear:
    """Bayesian linear regression with a diagonal Gaussian prior and per-observation noise.

    Args:
        prior_sd: Prior standard deviation of each weight.
        prior_mean: Prior mean of each weight (zeros when ``None``). The targets are centred on their mean after
            the prior's prediction is taken out, so the level (the bias) is learnt from the data.
    """

    def __init__(self, prior_sd: np.ndarray, prior_mean: np.ndarray | None = None) -> None:
        self.prior_sd = prior_sd
        self.prior_mean = np.zeros_like(prior_sd) if prior_mean is None else prior_mean
        self.mean = self.prior_mean.copy()
        self.cov = np.diag(prior_sd**2)
        self.offset = 0.0

    def fit(self, x: np.ndarray, y: np.ndarray, noise_sd: np.ndarray) -> BayesianLinear:
        """The posterior given rows ``x``, targets ``y`` and each observation's noise standard deviation."""
        if len(y) == 0:
            return self
        prior_precision = 1.0 / self.prior_sd**2
        self.offset = float(np.mean(y - x @ self.prior_mean))
        precision = np.diag(prior_precision) + (x.T * (1.0 / noise_sd**2)) @ x
        self.cov = np.linalg.inv(precision)
        self.mean = self.cov @ (prior_precision * self.prior_mean + x.T @ ((y - self.offset) / noise_sd**2))
        return self

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation of the model at each row of ``x`` (noise excluded)."""
        mean = x @ self.mean + self.offset
        variance = np.einsum("ij,jk,ik->i", x, self.cov, x)
        return mean, np.sqrt(np.maximum(variance, 1e-12))


def expected_improvement(mean: np.ndarray, sd: np.ndarray, best: float) -> np.ndarray:
    """Expected improvement over ``best`` of normal beliefs (maximisation)."""
    from scipy.stats import norm

    z = (mean - best) / sd
    return sd * (z * norm.cdf(z) + norm.pdf(z))


def probability_at_most(mean: np.ndarray, sd: np.ndarray, limit: float) -> np.ndarray:
    """P(value <= limit) under normal beliefs."""
    from scipy.stats import norm

    return np.asarray(norm.cdf((limit - mean) / sd))
