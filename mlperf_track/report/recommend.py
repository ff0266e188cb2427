"""The answer in words: which configuration to ship under the stated limits, against the baseline, and the runner-up.

``run``, ``bench``, ``tune`` and ``report`` all end with these lines, and the parent run carries them as its
description, so every place a user looks says the same thing. Example::

    Ship quantized/onnxruntime/int8 at batch 8: 1,234 samples/s, 3.8x the fp32 eager baseline's throughput
    at batch 8, top-1 -0.3 points (95% CI -0.9..+0.3: no measurable change), p99 7.1 ms, peak memory 412 MB.
    Runner-up on the Pareto front: baseline/onnxruntime/fp32 at batch 8: 902 samples/s, 2.8x ..., top-1 ...
    Limits: top-1 drop <= 1 point (a change too small to measure passes).
    Not eligible: 2 failed, 3 accuracy drop (of 26 cases).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mlperf_track import metrics as m
from mlperf_track.engine.eligibility import FINISHED, Candidate, Limits, describe_delta
from mlperf_track.engine.ranking import Ranking, rank
from mlperf_track.spec import TEXT_MODEL_PREFIXES


@dataclass(frozen=True)
class Recommendation:
    """The short answer of one question.

    Attributes:
        ranking: Every candidate judged, the best and the front.
        lines: The answer, one sentence per line: the pick, the runner-up, the limits, what was excluded.
    """

    ranking: Ranking
    lines: tuple[str, ...]

    @property
    def best(self) -> Candidate | None:
        """The configuration to ship, or ``None`` when none qualifies."""
        return self.ranking.best

    @property
    def text(self) -> str:
        """The lines joined by newlines."""
        return "\n".join(self.lines)


def question_heading(model: str, image_size: int | str, dataset: str, device: str) -> str:
    """``resnet50, 64 px, digits on cpu``: what an answer is about (a text model has no image size)."""
    if model.startswith(TEXT_MODEL_PREFIXES):
        return f"{model}, {dataset} on {device}"
    return f"{model}, {image_size} px, {dataset} on {device}"


def format_number(value: float) -> str:
    """``1,234`` for large values, ``56.7`` for medium, three significant digits for small ones."""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:,.1f}"
    return f"{value:.3g}"


def reference_for(candidate: Candidate, pool: Sequence[Candidate]) -> Candidate | None:
    """The fp32 baseline of the same question, machine and batch size (the eager one when there is one)."""
    references = [
        other
        for other in pool
        if other.variant == "baseline"
        and other.precision == "fp32"
        and other.status == FINISHED
        and other.batch_size == candidate.batch_size
        and other.question == candidate.question
        and other.hardware == candidate.hardware
        and other.metric(m.THROUGHPUT) is not None
    ]
    references.sort(key=lambda other: (other.runtime != "eager", other.valid is False, other.runtime))
    return references[0] if references else None


def versus_baseline(candidate: Candidate, pool: Sequence[Candidate]) -> str:
    """``3.8x the fp32 eager baseline's throughput at batch 8`` (or why there is no comparison)."""
    reference = reference_for(candidate, pool)
    batch = f"batch {candidate.batch_size}" if candidate.batch_size is not None else "this batch size"
    if reference is None:
        return f"no fp32 baseline was measured at {batch} to compare with"
    if reference is candidate or (reference.name == candidate.name and reference.run_id == candidate.run_id):
        return f"the fp32 {reference.runtime} baseline itself"
    mine, theirs = candidate.metric(m.THROUGHPUT), reference.metric(m.THROUGHPUT)
    if mine is None or not theirs:
        return f"no throughput to compare with the fp32 {reference.runtime} baseline at {batch}"
    ratio = mine / theirs
    text = f"{ratio:.2f}x" if ratio < 1 else f"{ratio:.1f}x" if ratio < 10 else f"{ratio:,.0f}x"
    text += f" the fp32 {reference.runtime} baseline's throughput at {batch}"
    return text + (" (whose measurement is invalid)" if reference.valid is False else "")


def describe(candidate: Candidate, pool: Sequence[Candidate], metric: str = m.THROUGHPUT) -> str:
    """``X at batch 8: 1,234 samples/s, 3.8x the ... baseline's throughput, top-1 ..., p99 ..., memory ...``."""
    parts = []
    throughput = candidate.metric(m.THROUGHPUT)
    if throughput is not None:
        parts.append(f"{format_number(throughput)} samples/s")
        parts.append(versus_baseline(candidate, pool))
    accuracy = describe_delta(candidate)
    if accuracy:
        parts.append(accuracy)
    p99 = candidate.metric(m.LATENCY_P99)
    if p99 is not None:
        parts.append(f"p99 {format_number(p99)} ms")
    memory = candidate.memory_mb()
    if memory is not None:
        parts.append(f"peak memory {memory[1]:,.0f} MB")
    if metric not in (m.THROUGHPUT, m.LATENCY_P99) and candidate.metric(metric) is not None:
        parts.append(f"{metric} {format_number(candidate.metric(metric) or 0.0)}")
    batch = f" at batch {candidate.batch_size}" if candidate.batch_size is not None else ""
    return f"{candidate.config}{batch}: " + ", ".join(parts)


def _excluded_line(ranking: Ranking) -> str | None:
    counts = ranking.counts()
    if not counts:
        return None
    listed = ", ".join(f"{count} {category}" for category, count in counts.items())
    total = len(ranking.judged)
    return f"Not eligible: {listed} (of {total} case{'' if total == 1 else 's'})."


def _nothing_qualifies(ranking: Ranking, pool: Sequence[Candidate]) -> list[str]:
    lines = [f"No configuration qualifies (limits: {ranking.limits.describe()}); the reasons are below."]
    measured = [
        (candidate, verdict)
        for candidate, verdict in ranking.excluded
        if candidate.status == FINISHED and candidate.metric(ranking.metric) is not None
    ]
    if measured:
        sign = -1.0 if ranking.maximize else 1.0
        closest, verdict = min(measured, key=lambda item: sign * (item[0].metric(ranking.metric) or 0.0))
        lines.append(f"Fastest excluded: {describe(closest, pool, ranking.metric)}; {verdict.text}.")
    return lines


def recommend(
    candidates: Sequence[Candidate],
    limits: Limits,
    *,
    metric: str = m.THROUGHPUT,
    maximize: bool = True,
    heading: str = "",
) -> Recommendation:
    """Judge ``candidates`` (one question, one machine) and say what to ship.

    Args:
        candidates: Every case of the question, finished or not.
        limits: The run's limits.
        metric: The ranking metric (throughput unless a tuner optimises latency or accuracy).
        maximize: Whether a larger metric is better.
        heading: Prefix of the first line (``resnet50, 64 px, digits on cpu``).
    """
    ranking = rank(candidates, limits, metric=metric, maximize=maximize)
    prefix = f"{heading}: " if heading else ""
    if not candidates:
        text = f"{prefix}nothing was measured, so there is nothing to recommend."
        return Recommendation(ranking, (text if heading else text.capitalize(),))
    best = ranking.best
    if best is None:
        lines = _nothing_qualifies(ranking, candidates)
        lines[0] = prefix + (lines[0][0].lower() + lines[0][1:] if prefix else lines[0])
    else:
        lines = [f"{prefix}ship {describe(best, candidates, metric)}."]
        runner = ranking.runner_up
        if runner is not None:
            where = "Runner-up on the Pareto front" if runner[1] == "pareto" else "Runner-up (next fastest)"
            lines.append(f"{where}: {describe(runner[0], candidates, metric)}.")
        lines.append(f"Limits: {limits.describe()}.")
    excluded = _excluded_line(ranking)
    if excluded:
        lines.append(excluded)
    if not heading:
        lines[0] = lines[0][0].upper() + lines[0][1:]
    return Recommendation(ranking, tuple(lines))
