"""Regression detection between two latency sample sets.

Thresholds are written like pytest-benchmark's ``--benchmark-compare-fail``: ``"p50:5%"`` (relative),
``"mean:0.5ms"`` (absolute), several comma-separated. A check returns a message when it fails, else ``None``.

A slowdown counts as a regression only when it is large, real within the runs, and larger than runs differ:

1. the candidate's statistic exceeds the baseline's by more than the threshold (point estimate);
2. the bootstrap confidence interval of the ratio candidate/baseline for that statistic lies above 1;
3. for the central statistics (``p50``, ``mean``, ``min``) a one-sided Mann-Whitney U test also says the
   candidate's latencies are stochastically larger (p < alpha). Tail statistics (``p90`` ... ``max``) rely
   on their bootstrap interval alone, since a rank test looks at the whole distribution, not its tail;
4. the change is significant given the between-run spread (:mod:`mlperf_track.report.noise`): a one-sided
   test at level ``alpha`` on the difference of two runs, from the replicates of ``--repeats`` runs (Welch) or
   a recorded noise floor (sd of a difference = sqrt(2) x one run's sd). Points 2 and 3 only see the noise
   inside each run; two runs of the same code differ by more than that. The comparison says which spread it
   used, or that it had none (the gate is then threshold-only).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final

from mlperf_track.errors import ConfigError
from mlperf_track.report.noise import (
    NONE,
    REPLICATES,
    Noise,
    RecordedFloor,
    choose_noise,
    floor_bounds,
    replicate_bounds,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np

#: Statistic name -> percentile (``None``: the mean).
STATISTICS: Final[dict[str, float | None]] = {
    "min": 0.0,
    "p50": 50.0,
    "p90": 90.0,
    "p95": 95.0,
    "p99": 99.0,
    "max": 100.0,
    "mean": None,
}
_ALIASES: Final = {"median": "p50"}
#: Statistics a rank test speaks for.
CENTRAL_STATISTICS: Final = frozenset({"p50", "mean", "min"})
_THRESHOLD = re.compile(r"^\s*([a-z0-9]+)\s*:\s*([0-9]*\.?[0-9]+)\s*(%|ms)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Threshold:
    """How much a statistic may grow: ``limit`` percent (relative) or milliseconds (absolute)."""

    statistic: str
    limit: float
    relative: bool = True

    @property
    def text(self) -> str:
        """The threshold as written on the command line."""
        return f"{self.statistic}:{self.limit:g}{'%' if self.relative else 'ms'}"


def parse_thresholds(text: str) -> tuple[Threshold, ...]:
    """Parse ``"p50:5%,p99:1.5ms"``.

    Raises:
        ConfigError: An item is malformed or names an unknown statistic.
    """
    items = [item for item in text.split(",") if item.strip()]
    if not items:
        raise ConfigError("--fail-on", text, "STAT:N% or STAT:Nms, comma-separated (e.g. p50:5%)")
    thresholds = []
    for item in items:
        match = _THRESHOLD.match(item)
        if not match:
            raise ConfigError("--fail-on", item.strip(), "STAT:N% or STAT:Nms (e.g. p50:5%, mean:0.5ms)")
        name = _ALIASES.get(match.group(1).lower(), match.group(1).lower())
        if name not in STATISTICS:
            raise ConfigError("--fail-on", item.strip(), sorted(STATISTICS), hint="unknown statistic")
        thresholds.append(Threshold(name, float(match.group(2)), match.group(3) == "%"))
    return tuple(thresholds)


def statistic_of(name: str, values: np.ndarray, axis: int = -1) -> np.ndarray:
    """The statistic ``name`` of ``values`` along ``axis`` (vectorised, for the bootstrap)."""
    import numpy as np

    percentile = STATISTICS[name]
    if percentile is None:
        return np.asarray(np.mean(values, axis=axis))
    return np.asarray(np.percentile(values, percentile, axis=axis))


@dataclass(frozen=True)
class StatisticChange:
    """One statistic of both sample sets, and the ratio candidate/baseline with its intervals.

    ``ci_low``/``ci_high`` bound the ratio from the noise inside the two runs (bootstrap);
    ``noise_low``/``noise_high`` are one-sided bounds from the between-run noise (``None`` when none is known).
    """

    statistic: str
    baseline_ms: float
    candidate_ms: float
    ratio: float
    ci_low: float
    ci_high: float
    noise_low: float | None = None
    noise_high: float | None = None

    @property
    def change_pct(self) -> float:
        """Relative change in percent (positive: the candidate is slower)."""
        return 100.0 * (self.ratio - 1.0)


@dataclass(frozen=True)
class Comparison:
    """The comparison of a candidate's latencies with a baseline's.

    Attributes:
        baseline: Name of the baseline samples.
        candidate: Name of the candidate samples.
        n_baseline: Baseline sample count.
        n_candidate: Candidate sample count.
        p_slower: One-sided Mann-Whitney U p-value for "the candidate is slower".
        p_faster: One-sided Mann-Whitney U p-value for "the candidate is faster".
        alpha: Significance level.
        confidence: Confidence level of the bootstrap intervals.
        changes: Per statistic, the values and the ratio's intervals.
        noise: The between-run noise the verdicts account for.
    """

    baseline: str
    candidate: str
    n_baseline: int
    n_candidate: int
    p_slower: float
    p_faster: float
    alpha: float
    confidence: float
    changes: dict[str, StatisticChange] = field(default_factory=dict)
    noise: Noise = field(default_factory=lambda: choose_noise([], [], None))

    def slower_within_runs(self, statistic: str) -> bool:
        """Whether the candidate is slower on ``statistic`` beyond the noise inside the two runs."""
        change = self.changes[statistic]
        if not change.ci_low > 1.0:
            return False
        return statistic not in CENTRAL_STATISTICS or self.p_slower < self.alpha

    def significantly_slower(self, statistic: str) -> bool:
        """Whether the candidate is slower beyond chance: within the runs and beyond the between-run noise."""
        low = self.changes[statistic].noise_low
        return self.slower_within_runs(statistic) and (low is None or low > 1.0)

    def significantly_faster(self, statistic: str) -> bool:
        """Whether the candidate is faster on ``statistic`` beyond chance (within and between runs)."""
        change = self.changes[statistic]
        if not change.ci_high < 1.0 or (change.noise_high is not None and not change.noise_high < 1.0):
            return False
        return statistic not in CENTRAL_STATISTICS or self.p_faster < self.alpha

    def as_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready dict."""
        data = asdict(self)
        data["changes"] = {name: asdict(change) for name, change in self.changes.items()}
        data["noise"] = self.noise.as_dict()
        return data


def compare_samples(
    baseline: np.ndarray,
    candidate: np.ndarray,
    *,
    statistics: tuple[str, ...] = ("p50", "mean", "p90", "p99"),
    baseline_name: str = "baseline",
    candidate_name: str = "candidate",
    alpha: float = 0.05,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
    baseline_replicates: Sequence[np.ndarray] = (),
    candidate_replicates: Sequence[np.ndarray] = (),
    noise_floor: float | RecordedFloor | None = None,
) -> Comparison:
    """Compare two latency samples: Mann-Whitney U, bootstrap intervals of ratios, and the between-run noise.

    Args:
        baseline: Baseline latencies (ms).
        candidate: Candidate latencies (ms).
        statistics: Statistics to compare (names of :data:`STATISTICS`).
        baseline_name: Label of the baseline.
        candidate_name: Label of the candidate.
        alpha: Significance level of the rank test.
        confidence: Confidence level of the intervals.
        n_resamples: Bootstrap resamples.
        seed: Seed of the bootstrap's generator (results are reproducible).
        baseline_replicates: The baseline's samples split by replicate (``--repeats``), or empty.
        candidate_replicates: The candidate's, likewise.
        noise_floor: One run's between-run spread on this machine: a figure (0.04 = 4%, taken as known) or a
            :class:`~mlperf_track.report.noise.RecordedFloor`; ``None``: the replicates' spread when there are
            some. With replicates on both sides as well, the wider bound of the two is used.
    """
    import numpy as np
    from scipy import stats

    for name in statistics:
        if name not in STATISTICS:
            raise ConfigError("statistic", name, sorted(STATISTICS))
    base = np.asarray(baseline, dtype=float)
    cand = np.asarray(candidate, dtype=float)
    p_slower = float(stats.mannwhitneyu(cand, base, alternative="greater").pvalue)
    p_faster = float(stats.mannwhitneyu(cand, base, alternative="less").pvalue)
    base_parts = [np.asarray(part, dtype=float) for part in baseline_replicates]
    cand_parts = [np.asarray(part, dtype=float) for part in candidate_replicates]
    noise = choose_noise(base_parts, cand_parts, noise_floor)
    changes = {}
    for name in dict.fromkeys(statistics):
        change = _change(
            name, base, cand, confidence=confidence, n_resamples=n_resamples, rng=np.random.default_rng(seed)
        )
        changes[name] = _with_noise(change, noise, base_parts, cand_parts, alpha)
    return Comparison(
        baseline_name,
        candidate_name,
        int(base.size),
        int(cand.size),
        p_slower,
        p_faster,
        alpha,
        confidence,
        changes,
        noise,
    )


def _with_noise(
    change: StatisticChange, noise: Noise, base_parts: list[np.ndarray], cand_parts: list[np.ndarray], alpha: float
) -> StatisticChange:
    """``change`` with the bounds that the between-run noise allows."""
    import numpy as np

    if noise.source == NONE:
        return change
    floor = noise.floor_of(change.statistic)
    bounds = []
    if noise.source == REPLICATES:
        base_values = np.array([statistic_of(change.statistic, part) for part in base_parts])
        cand_values = np.array([statistic_of(change.statistic, part) for part in cand_parts])
        bounds.append(replicate_bounds(base_values, cand_values, alpha))
    if floor is not None:
        bounds.append(floor_bounds(change.ratio, floor, alpha, noise.runs))
    if not bounds:
        return change
    # Replicates of one process can miss the spread between processes: with a floor too, the wider bound wins.
    low, high = min(b[0] for b in bounds), max(b[1] for b in bounds)
    return replace(change, noise_low=low, noise_high=high)


def _change(
    name: str, base: np.ndarray, cand: np.ndarray, *, confidence: float, n_resamples: int, rng: np.random.Generator
) -> StatisticChange:
    """Point values and a percentile-bootstrap interval of the ratio of ``name``, candidate over baseline."""
    import numpy as np
    from scipy import stats

    base_value = float(statistic_of(name, base))
    cand_value = float(statistic_of(name, cand))
    ratio = cand_value / base_value if base_value > 0 else float("nan")

    def ratio_of(c: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        return statistic_of(name, c, axis) / statistic_of(name, b, axis)

    # Percentile method: BCa's jackknife is quadratic in the sample count (10k latencies are common).
    # ``batch`` bounds memory at about 200 x n floats per sample set.
    with np.errstate(divide="ignore", invalid="ignore"):
        result = stats.bootstrap(
            (cand, base),
            ratio_of,
            vectorized=True,
            paired=False,
            n_resamples=n_resamples,
            confidence_level=confidence,
            method="percentile",
            batch=200,
            rng=rng,
        )
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return StatisticChange(name, base_value, cand_value, ratio, low, high)


def _exceeds(change: StatisticChange, threshold: Threshold) -> bool:
    if threshold.relative:
        return change.change_pct > threshold.limit
    return change.candidate_ms - change.baseline_ms > threshold.limit


def noise_phrase(comparison: Comparison, change: StatisticChange) -> str:
    """How the change stands against the between-run noise, for messages."""
    if change.noise_low is None:
        return "between-run noise not accounted for: threshold-only gate"
    return f"between-run bound {100 * (change.noise_low - 1):+.1f}% ({comparison.noise.detail})"


def check_regression(comparison: Comparison, threshold: Threshold) -> str | None:
    """A message when ``comparison`` shows a significant slowdown beyond ``threshold``, else ``None``."""
    change = comparison.changes.get(threshold.statistic)
    if change is None:
        raise ConfigError("threshold", threshold.text, sorted(comparison.changes), hint="statistic not compared")
    if not _exceeds(change, threshold) or not comparison.significantly_slower(threshold.statistic):
        return None
    ci = f"{100 * (change.ci_low - 1):+.1f}%..{100 * (change.ci_high - 1):+.1f}%"
    return (
        f"{threshold.statistic} regressed {change.baseline_ms:.4g} -> {change.candidate_ms:.4g} ms "
        f"({change.change_pct:+.1f}%, {comparison.confidence:.0%} CI {ci}, "
        f"Mann-Whitney p={comparison.p_slower:.2g}, {noise_phrase(comparison, change)}), beyond {threshold.text}"
    )


def masked_by_noise(comparison: Comparison, threshold: Threshold) -> str | None:
    """A message when a change beyond ``threshold`` is real within the runs but not beyond the between-run noise."""
    change = comparison.changes[threshold.statistic]
    if not _exceeds(change, threshold) or not comparison.slower_within_runs(threshold.statistic):
        return None
    if comparison.significantly_slower(threshold.statistic):
        return None
    return (
        f"{threshold.statistic} {change.change_pct:+.1f}% is beyond {threshold.text} within the runs, but not "
        f"beyond the noise between runs ({noise_phrase(comparison, change)}): not called a regression"
    )


def check_regressions(comparison: Comparison, thresholds: tuple[Threshold, ...]) -> list[str]:
    """The messages of every failed threshold (empty when none failed)."""
    return [message for threshold in thresholds if (message := check_regression(comparison, threshold))]
