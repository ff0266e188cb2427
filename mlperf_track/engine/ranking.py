"""Ranking the candidates of :mod:`mlperf_track.engine.eligibility`: the best, the Pareto front, the runner-up.

The best is the eligible candidate with the highest ranking metric (ties: the lower p50 latency, then the name).
The Pareto front trades that metric against top-1 among the eligible candidates; the runner-up is the next point
on it (slower, more accurate), or the next fastest eligible candidate when the front has one point. Pure Python.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mlperf_track import metrics as m
from mlperf_track.engine.eligibility import CATEGORIES, Candidate, Limits, Verdict, judge

#: An objective of the Pareto front: how to read it from a candidate, and whether larger is better.
Objective = tuple[Callable[[Candidate], float | None], bool]


def pareto_front(candidates: Sequence[Candidate], objectives: Sequence[Objective]) -> list[Candidate]:
    """Candidates no other one dominates on ``objectives``; candidates missing an objective are left out."""
    points: list[tuple[Candidate, tuple[float, ...]]] = []
    for candidate in candidates:
        signed = []
        for read, larger in objectives:
            value = read(candidate)
            if value is None:
                break
            signed.append(value if larger else -value)
        else:
            points.append((candidate, tuple(signed)))

    def dominated(mine: tuple[float, ...]) -> bool:
        return any(all(o >= v for o, v in zip(other, mine, strict=True)) and other != mine for _, other in points)

    return [candidate for candidate, signed in points if not dominated(signed)]


@dataclass
class Ranking:
    """Every candidate judged, the best, the Pareto front and the runner-up.

    Attributes:
        limits: The limits applied.
        metric: The ranking metric.
        maximize: Whether a larger metric is better.
        judged: Every candidate with its verdict, in the order given.
        eligible: The eligible candidates, best first.
        front: The eligible Pareto front (metric against top-1), best first.
    """

    limits: Limits
    metric: str
    maximize: bool
    judged: list[tuple[Candidate, Verdict]]
    eligible: list[Candidate]
    front: list[Candidate]

    @property
    def best(self) -> Candidate | None:
        """The eligible candidate with the best metric, or ``None`` when none qualifies."""
        return self.eligible[0] if self.eligible else None

    @property
    def runner_up(self) -> tuple[Candidate, str] | None:
        """The alternative to the best: another configuration (the same one at another batch size is no choice).

        The next point of the Pareto front with another configuration (``"pareto"``: slower, more accurate),
        else the fastest eligible candidate with another configuration (``"next"``).
        """
        best = self.best
        if best is None:
            return None
        for candidates, kind in ((self.front, "pareto"), (self.eligible, "next")):
            other = next((candidate for candidate in candidates if candidate.config != best.config), None)
            if other is not None:
                return other, kind
        return None

    @property
    def excluded(self) -> list[tuple[Candidate, Verdict]]:
        """The candidates that may not be named best, with why."""
        return [(candidate, verdict) for candidate, verdict in self.judged if not verdict.eligible]

    def counts(self) -> dict[str, int]:
        """Excluded candidates per first-reason category, in :data:`CATEGORIES` order."""
        found = [verdict.category for _, verdict in self.excluded]
        return {category: found.count(category) for category in CATEGORIES if category in found}

    def verdict_of(self, candidate: Candidate) -> Verdict | None:
        """The verdict of ``candidate`` (by identity)."""
        return next((verdict for item, verdict in self.judged if item is candidate), None)


def rank(
    candidates: Sequence[Candidate], limits: Limits, *, metric: str = m.THROUGHPUT, maximize: bool = True
) -> Ranking:
    """Judge every candidate and order the eligible ones (ties: the lower p50 latency, then the name)."""
    judged = [(candidate, judge(candidate, limits, metric)) for candidate in candidates]
    sign = -1.0 if maximize else 1.0

    def key(candidate: Candidate) -> tuple[float, float, str]:
        p50 = candidate.metric(m.LATENCY_P50)
        return sign * (candidate.metric(metric) or 0.0), math.inf if p50 is None else p50, candidate.name

    eligible = sorted((candidate for candidate, verdict in judged if verdict.eligible), key=key)
    accuracy: Objective = (Candidate.accuracy_delta, True)
    objectives: list[Objective] = [(lambda c: c.metric(metric), maximize)]
    if any(candidate.accuracy_delta() is not None for candidate in eligible):
        objectives.append(accuracy)
    front = sorted(pareto_front(eligible, objectives), key=key)
    if eligible and eligible[0] not in front:  # the best lacks accuracy (no limit asked for it): keep it first
        front = [eligible[0], *front]
    return Ranking(limits, metric, maximize, judged, eligible, front)
