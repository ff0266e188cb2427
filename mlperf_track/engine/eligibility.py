"""Which measured case may be named best: one rule for the parent run, the report, the console and the tuner.

A candidate is **eligible** when every one of these holds; otherwise each broken one is a reason, with a
category the report counts (``failed``, ``out of memory``, ``killed``, ``invalid measurement``, ...):

1. it finished (not failed, out of memory, killed or still running);
2. its measurement is valid (:attr:`BenchmarkResult.valid`, the ``valid`` tag); a run logged before validity
   verdicts existed has no tag and counts as valid;
3. it has the ranking metric (throughput, unless the tuner optimises something else);
4. it is within the accuracy limit. The drop is baseline top-1 minus case top-1, i.e. ``-accuracy/top1_delta``
   (a language model, which has no ``accuracy/top1``: next-token top-1, ``-accuracy/next_token_top1_delta`` and
   its CI):

   - a delta whose 95% CI (``accuracy/top1_delta_ci_low|high``) contains 0 is *no measurable change*, within
     any limit;
   - otherwise the point estimate decides: ``drop <= limit``. A drop whose point estimate exceeds the limit is
     out even when its CI straddles the limit: the evidence points beyond the limit, and a "best" must not rest
     on the benefit of the doubt (MLPerf's accuracy targets are met, not hoped for). The reason says that the
     interval reaches the limit, so a user knows more evaluation images could settle it;
   - a case without a delta while a limit is set is out, unless it cannot change accuracy: the fp32 baseline
     (on any runtime, which pins fp32 numerics).
5. its peak memory and p99 latency are within the memory and latency limits, when set.

The best is the eligible candidate with the highest ranking metric (:func:`mlperf_track.engine.ranking.rank`).
The rule reads only a candidate's status, validity and metrics, so it lives in the engine, where every layer
above can apply it: the pipeline (which case its load stage serves), the parent run, the report, the console
and the tuner. Pure Python: no pandas, MLflow or Optuna.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from mlperf_track import metrics as m

#: Run states of a candidate (MLflow's run statuses, lower-cased).
FINISHED: Final = "finished"
FAILED: Final = "failed"
KILLED: Final = "killed"
RUNNING: Final = "running"
#: Reason categories, in the order reports list them.
CATEGORIES: Final = (
    "failed",
    "out of memory",
    "killed",
    "unfinished",
    "invalid measurement",
    "not measured",
    "accuracy drop",
    "no accuracy",
    "memory limit",
    "latency limit",
    "constraint",
)
#: Memory metrics checked against a memory limit, most complete first (as the tuner's constraint does).
MEMORY_KEYS: Final = {
    "cuda": (m.GPU_PROCESS_PEAK, m.GPU_PEAK_RESERVED, m.GPU_PEAK_ALLOCATED),
    "cpu": (m.CPU_RSS_PEAK,),
}
NO_MEASURABLE_CHANGE: Final = "no measurable change"
#: The change, its 95% CI low and high, and their name: a classifier's top-1, a language model's next-token top-1.
TOP1_KEYS: Final = (m.ACCURACY_TOP1_DELTA, m.ACCURACY_TOP1_DELTA_CI_LOW, m.ACCURACY_TOP1_DELTA_CI_HIGH, "top-1")
NEXT_TOKEN_KEYS: Final = (
    m.ACCURACY_NEXT_TOKEN_TOP1_DELTA,
    m.ACCURACY_NEXT_TOKEN_TOP1_DELTA_CI_LOW,
    m.ACCURACY_NEXT_TOKEN_TOP1_DELTA_CI_HIGH,
    "next-token top-1",
)


@dataclass(frozen=True)
class Limits:
    """The limits a best must respect; ``None`` switches one off.

    Attributes:
        max_accuracy_drop: Largest top-1 drop below the fp32 baseline, as a fraction (0.01 = 1 point).
        memory_limit_mb: Largest peak memory (MiB): device memory on cuda, process RSS on cpu.
        p99_limit_ms: Largest p99 latency per batch.
    """

    max_accuracy_drop: float | None = None
    memory_limit_mb: float | None = None
    p99_limit_ms: float | None = None

    def describe(self) -> str:
        """The limits in words (``top-1 drop <= 1 point; memory <= 2,000 MB``), or ``no limits``."""
        parts = []
        if self.max_accuracy_drop is not None:
            parts.append(f"top-1 drop <= {_points(self.max_accuracy_drop)} (a change too small to measure passes)")
        if self.memory_limit_mb is not None:
            parts.append(f"peak memory <= {self.memory_limit_mb:,.0f} MB")
        if self.p99_limit_ms is not None:
            parts.append(f"p99 latency <= {self.p99_limit_ms:g} ms")
        return "; ".join(parts) or "no limits"


@dataclass(frozen=True)
class Candidate:
    """One measured (or failed) case, as the rule sees it.

    Attributes:
        name: The case name (the MLflow run name).
        config: The configuration label shown to users (``quantized/onnxruntime/int8``).
        variant: Variant name.
        runtime: Runtime name.
        precision: Precision.
        batch_size: Samples per call (``None`` when unknown).
        device: ``cpu`` or ``cuda``.
        status: :data:`FINISHED`, :data:`FAILED`, :data:`KILLED` or :data:`RUNNING`.
        metrics: Metric values by DESIGN.md key.
        valid: The validity verdict; ``None`` when the run predates it (counts as valid).
        invalid_reasons: Why the measurement is invalid.
        error: ``Type: message`` of a failure.
        out_of_memory: Whether the failure was running out of memory.
        run_id: The MLflow run (empty when not tracked).
        hardware: The machine (GPU name on cuda, CPU name on cpu).
        question: What the case answers, e.g. ``("resnet50", "64 px", "digits")``: never ranked across.
        broken: Reasons the source already knows (an Optuna constraint a trial violates, say), judged like
            the rule's own under the category ``constraint``.
    """

    name: str
    config: str
    variant: str
    runtime: str
    precision: str
    batch_size: int | None
    device: str = "cpu"
    status: str = FINISHED
    metrics: Mapping[str, float] = field(default_factory=dict)
    valid: bool | None = None
    invalid_reasons: tuple[str, ...] = ()
    error: str = ""
    out_of_memory: bool = False
    run_id: str = ""
    hardware: str = ""
    question: tuple[str, ...] = ()
    broken: tuple[str, ...] = ()

    @property
    def accuracy_preserving(self) -> bool:
        """The fp32 baseline cannot change accuracy (every runtime pins fp32 numerics)."""
        return self.variant == "baseline" and self.precision == "fp32"

    def metric(self, key: str) -> float | None:
        """A finite metric value, else ``None``."""
        value = self.metrics.get(key)
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None

    def memory_mb(self) -> tuple[str, float] | None:
        """``(key, value)`` of the peak memory checked against a memory limit, ``None`` when unmeasured."""
        for key in MEMORY_KEYS["cuda" if self.device.startswith("cuda") else "cpu"]:
            value = self.metric(key)
            if value is not None:
                return key, value
        return None

    def accuracy_keys(self) -> tuple[str, str, str, str]:
        """The keys the accuracy limit reads (:data:`TOP1_KEYS`, or :data:`NEXT_TOKEN_KEYS` for a language model)."""
        if self.metric(m.ACCURACY_TOP1_DELTA) is None and self.metric(m.ACCURACY_NEXT_TOKEN_TOP1_DELTA) is not None:
            return NEXT_TOKEN_KEYS
        return TOP1_KEYS

    def accuracy_ci(self) -> tuple[float | None, float | None]:
        """The 95% CI of :meth:`accuracy_delta` (``None`` bounds when it has none)."""
        _, low, high, _ = self.accuracy_keys()
        return self.metric(low), self.metric(high)

    def accuracy_delta(self) -> float | None:
        """Top-1 change against the baseline (a fraction); 0 for the fp32 baseline when it was not measured."""
        delta = self.metric(self.accuracy_keys()[0])
        return 0.0 if delta is None and self.accuracy_preserving else delta


@dataclass(frozen=True)
class Verdict:
    """The rule's answer for one candidate: eligible, or the reasons why not as ``(category, sentence)``."""

    reasons: tuple[tuple[str, str], ...] = ()

    @property
    def eligible(self) -> bool:
        """Whether the candidate may be named best."""
        return not self.reasons

    @property
    def category(self) -> str:
        """The first reason's category (``""`` when eligible)."""
        return self.reasons[0][0] if self.reasons else ""

    @property
    def text(self) -> str:
        """Every reason, ``; ``-separated (``""`` when eligible)."""
        return "; ".join(sentence for _, sentence in self.reasons)


def _points(fraction: float) -> str:
    """``0.01`` -> ``1 point``; ``0.005`` -> ``0.5 points``."""
    value = 100.0 * fraction
    return f"{value:g} point" + ("" if value == 1 else "s")


def accuracy_change(candidate: Candidate) -> str:
    """``no measurable change`` when the delta's CI contains 0, else ``loss``/``gain``; ``""`` without a CI."""
    delta = candidate.accuracy_delta()
    low, high = candidate.accuracy_ci()
    if delta is None:
        return ""
    if low is None or high is None:
        return NO_MEASURABLE_CHANGE if delta == 0 and candidate.accuracy_preserving else ""
    if low <= 0 <= high:
        return NO_MEASURABLE_CHANGE
    return "loss" if high < 0 else "gain"


def describe_delta(candidate: Candidate) -> str:
    """``top-1 -0.3 points (95% CI -0.9..+0.3: no measurable change)``; ``""`` without accuracy."""
    delta = candidate.accuracy_delta()
    if delta is None:
        return ""
    low, high = candidate.accuracy_ci()
    delta_key, _, _, label = candidate.accuracy_keys()
    text = f"{label} {100 * delta:+.1f} points"
    verdict = accuracy_change(candidate)
    if low is not None and high is not None:
        return f"{text} (95% CI {100 * low:+.1f}..{100 * high:+.1f}: {verdict})"
    if candidate.accuracy_preserving:
        return f"{text} (fp32 baseline)" if candidate.metric(delta_key) is not None else ""
    return f"{text} (no confidence interval)"


def _accuracy_reason(candidate: Candidate, limit: float) -> tuple[str, str] | None:
    delta = candidate.accuracy_delta()
    if delta is None:
        why = "no accuracy was measured (a labelled dataset measures it)"
        return "no accuracy", f"{why}; the {_points(limit)} accuracy limit needs it"
    if accuracy_change(candidate) == NO_MEASURABLE_CHANGE or -delta <= limit:
        return None
    sentence = f"{describe_delta(candidate)} exceeds the {_points(limit)} accuracy limit"
    high = candidate.accuracy_ci()[1]
    if high is not None and -high <= limit:
        sentence += " (its CI reaches the limit: more evaluation images could settle it)"
    return "accuracy drop", sentence


def _status_reason(candidate: Candidate) -> tuple[str, str] | None:
    if candidate.status == FAILED:
        if candidate.out_of_memory:
            return "out of memory", f"ran out of memory ({candidate.error})" if candidate.error else "ran out of memory"
        return "failed", f"failed: {candidate.error}" if candidate.error else "failed"
    if candidate.status == KILLED:
        return "killed", "killed before it finished"
    if candidate.status != FINISHED:
        return "unfinished", f"did not finish (status {candidate.status})"
    return None


def judge(candidate: Candidate, limits: Limits, metric: str = m.THROUGHPUT) -> Verdict:
    """THE eligibility rule (see the module docstring): every reason ``candidate`` may not be named best."""
    status = _status_reason(candidate)
    if status is not None:
        return Verdict((status,))
    reasons: list[tuple[str, str]] = []
    if candidate.valid is False:
        why = "; ".join(candidate.invalid_reasons) or "the measurement was flagged invalid"
        reasons.append(("invalid measurement", f"invalid measurement: {why}"))
    if candidate.metric(metric) is None:
        reasons.append(("not measured", f"{metric} was not measured"))
    if limits.max_accuracy_drop is not None:
        accuracy = _accuracy_reason(candidate, limits.max_accuracy_drop)
        if accuracy is not None:
            reasons.append(accuracy)
    if limits.memory_limit_mb is not None:
        memory = candidate.memory_mb()
        if memory is None:
            reasons.append(("memory limit", "peak memory was not measured; the memory limit needs it"))
        elif memory[1] > limits.memory_limit_mb:
            reasons.append(
                ("memory limit", f"peak memory {memory[1]:,.0f} MB above the {limits.memory_limit_mb:,.0f} MB limit")
            )
    if limits.p99_limit_ms is not None:
        p99 = candidate.metric(m.LATENCY_P99)
        if p99 is None:
            reasons.append(("latency limit", "p99 latency was not measured; the latency limit needs it"))
        elif p99 > limits.p99_limit_ms:
            reasons.append(("latency limit", f"p99 {p99:.3g} ms above the {limits.p99_limit_ms:g} ms limit"))
    reasons += [("constraint", sentence) for sentence in candidate.broken]
    return Verdict(tuple(reasons))
