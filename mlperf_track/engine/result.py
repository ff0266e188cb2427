"""The plain result object of one measured case.

A :class:`BenchmarkResult` is what the engine hands upwards: the case, its metrics keyed by the names in
:mod:`mlperf_track.metrics`, the raw per-iteration latencies, facts as tags, and for every metric that could
not be measured a note saying why. It knows nothing of MLflow or Optuna; those layers adapt it.

:func:`merge_results` joins replicates of one case the way ``torch.utils.benchmark``'s ``Measurement.merge``
does: the raw samples are extended, every statistic and the validity verdict are recomputed from them, and
metadata that differs between the replicates is dropped (with a note), never averaged into a number that no
replicate measured, except where the merged meaning is plain (a peak is the largest peak; a start-up time is
the first replicate's, the only cold one).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from mlperf_track import metrics as m
from mlperf_track.engine.json_file import JsonRecord
from mlperf_track.spec import CaseSpec

if TYPE_CHECKING:
    from mlperf_track.spec import TimingConfig

#: 2: ``blocks`` and ``replicate_counts`` were added (files of version 1 still load).
SCHEMA_VERSION = 2

#: One block of the block-timed throughput phase: ``(calls, milliseconds)``.
Block = tuple[int, float]


def block_throughput(blocks: Sequence[Block], batch_size: int) -> float:
    """Samples per second over blocks of back-to-back calls: ``batch * total calls / total time``.

    Blocks of different sizes (replicates merged) are normalised by their call counts.
    """
    calls = sum(count for count, _ in blocks)
    seconds = sum(ms for _, ms in blocks) / 1e3
    return batch_size * calls / seconds


@dataclass(frozen=True)
class BenchmarkResult(JsonRecord):
    """Result of one case.

    Attributes:
        case: What was measured.
        metrics: Metric values keyed by DESIGN.md names; a metric that could not be measured is absent.
        samples_ms: Raw per-iteration latencies of the timed window, in milliseconds, in call order.
        tags: Facts about the run (effective precision settings, hardware, software, stop reason).
        notes: Why a metric or source is absent, keyed by metric key or source name.
        warnings: Human-readable warnings (high spread, short energy window, ...).
        invalid_reasons: Why the measurement is not usable (time cap hit before the CI target, spread or
            stability out of bounds, ...); empty when it is valid.
        blocks: ``(calls, milliseconds)`` per block when throughput was block-timed, else empty.
        replicate_counts: When replicates were merged, how many of ``samples_ms`` (in order) each replicate
            contributed; empty for a single run.
    """

    case: CaseSpec
    metrics: dict[str, float] = field(default_factory=dict)
    samples_ms: tuple[float, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    invalid_reasons: tuple[str, ...] = ()
    blocks: tuple[Block, ...] = ()
    replicate_counts: tuple[int, ...] = ()

    @property
    def valid(self) -> bool:
        """Whether the measurement can be trusted and ranked (no :attr:`invalid_reasons`)."""
        return not self.invalid_reasons

    def __post_init__(self) -> None:
        for key, value in self.metrics.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise ValueError(f"metric {key!r} has the non-finite or non-numeric value {value!r}")
        if self.replicate_counts and sum(self.replicate_counts) != len(self.samples_ms):
            raise ValueError(
                f"replicate_counts {self.replicate_counts} do not add up to the {len(self.samples_ms)} samples"
            )

    @property
    def replicates(self) -> list[tuple[float, ...]]:
        """The samples of each replicate, in run order (one entry for a single run)."""
        counts = self.replicate_counts or (len(self.samples_ms),)
        bounds = [0, *itertools.accumulate(counts)]
        return [self.samples_ms[start:end] for start, end in itertools.pairwise(bounds)]

    def with_metrics(self, metrics: dict[str, float], notes: dict[str, str] | None = None) -> BenchmarkResult:
        """Return a copy with ``metrics`` (and ``notes``) merged in."""
        return replace(
            self,
            metrics={**self.metrics, **metrics},
            notes={**self.notes, **(notes or {})},
        )

    def with_tags(self, tags: dict[str, str]) -> BenchmarkResult:
        """Return a copy with ``tags`` merged in."""
        return replace(self, tags={**self.tags, **tags})

    def with_warnings(self, *warnings: str) -> BenchmarkResult:
        """Return a copy with ``warnings`` appended."""
        return replace(self, warnings=(*self.warnings, *warnings))

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready dict."""
        return {
            "schema_version": SCHEMA_VERSION,
            "case": self.case.to_dict(),
            "metrics": dict(self.metrics),
            "samples_ms": list(self.samples_ms),
            "tags": dict(self.tags),
            "notes": dict(self.notes),
            "warnings": list(self.warnings),
            "valid": self.valid,
            "invalid_reasons": list(self.invalid_reasons),
            "blocks": [[calls, ms] for calls, ms in self.blocks],
            "replicate_counts": list(self.replicate_counts),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchmarkResult:
        """Inverse of :meth:`to_dict`."""
        return cls(
            case=CaseSpec.from_dict(data["case"]),
            metrics={key: float(value) for key, value in data.get("metrics", {}).items()},
            samples_ms=tuple(float(value) for value in data.get("samples_ms", [])),
            tags={key: str(value) for key, value in data.get("tags", {}).items()},
            notes={key: str(value) for key, value in data.get("notes", {}).items()},
            warnings=tuple(str(value) for value in data.get("warnings", [])),
            invalid_reasons=tuple(str(value) for value in data.get("invalid_reasons", [])),
            blocks=tuple((int(calls), float(ms)) for calls, ms in data.get("blocks", [])),
            replicate_counts=tuple(int(value) for value in data.get("replicate_counts", [])),
        )


def results_to_json(results: list[BenchmarkResult], indent: int | None = 2) -> str:
    """Several results as one JSON document (``{"results": [...]}``)."""
    return json.dumps({"schema_version": SCHEMA_VERSION, "results": [r.to_dict() for r in results]}, indent=indent)


def results_from_json(text: str) -> list[BenchmarkResult]:
    """Inverse of :func:`results_to_json`."""
    return [BenchmarkResult.from_dict(item) for item in json.loads(text)["results"]]


#: Metrics recomputed from the merged samples (never taken from a replicate).
_RECOMPUTED: frozenset[str] = frozenset(
    {
        *m.LATENCY_KEYS,
        m.LATENCY_IQR,
        m.LATENCY_CV,
        m.LATENCY_P50_CI_LOW,
        m.LATENCY_P50_CI_HIGH,
        m.LATENCY_COUNT,
        m.THROUGHPUT,
        m.LATENCY_P50_REPLICATE_CV,
        m.LATENCY_REPLICATE_COUNT,
    }
)
#: Metrics that are a constant times the throughput (FLOPs x samples/s, and that over a fixed peak).
_PER_THROUGHPUT: frozenset[str] = frozenset({m.ACHIEVED_TFLOPS, m.PEAK_FRACTION})
#: Tags recomputed for the merged result.
_MERGE_TAGS = ("engine.stop_reason", "engine.window_s", "engine.p50_ci_rel_width", "engine.throughput_method")


def _merged_value(key: str, values: list[float], results: Sequence[BenchmarkResult], throughput: float) -> float | str:
    """The merged value of a metric present in some replicates, or a note saying why it is dropped."""
    if key.startswith("startup/"):
        return values[0]  # start-up happens once: the first replicate's is the cold one
    if key.startswith("memory/"):
        return max(values)  # a peak over replicates is the largest peak
    if key in _PER_THROUGHPUT:
        # Exactly proportional to the throughput when every replicate had the same FLOPs and peak.
        ratios = [
            r.metrics[key] / r.metrics[m.THROUGHPUT] for r in results if key in r.metrics and m.THROUGHPUT in r.metrics
        ]
        if ratios and max(ratios) - min(ratios) <= 1e-9 * max(ratios):
            return ratios[0] * throughput
    elif len(set(values)) == 1:
        return values[0]
    return f"differs between replicates ({min(values):.4g} to {max(values):.4g}); dropped from the merged result"


def _merge_metrics(results: Sequence[BenchmarkResult], throughput: float) -> tuple[dict[str, float], dict[str, str]]:
    metrics: dict[str, float] = {}
    notes: dict[str, str] = {}
    keys = dict.fromkeys(key for result in results for key in result.metrics)
    for key in keys:
        if key in _RECOMPUTED:
            continue
        merged = _merged_value(key, [r.metrics[key] for r in results if key in r.metrics], results, throughput)
        if isinstance(merged, str):
            notes[key] = merged
        else:
            metrics[key] = merged
    return metrics, notes


def _common_tags(results: Sequence[BenchmarkResult]) -> dict[str, str]:
    """Tags every replicate carries with the same value (as ``Measurement.merge`` keeps common metadata)."""
    first = results[0].tags
    return {k: v for k, v in first.items() if k not in _MERGE_TAGS and all(r.tags.get(k) == v for r in results)}


def merge_results(results: Sequence[BenchmarkResult], timing: TimingConfig) -> BenchmarkResult:
    """Merge replicates of one case: extend the samples, recompute statistics and validity, keep what agrees.

    Args:
        results: Results of the same case, in the order they ran (already merged ones may be merged again).
        timing: The thresholds of the validity verdict (:func:`mlperf_track.engine.validity.invalid_reasons`).

    Returns:
        One result whose samples are the replicates' in run order, with ``replicate_counts``, the between-
        replicate spread ``latency/p50_replicate_cv`` (2+ replicates), ``latency/replicate_count``, and
        throughput from the merged blocks when every replicate was block-timed, else from the samples.

    Raises:
        ValueError: No results, or results of different cases.
    """
    import statistics

    from mlperf_track.engine.stats import LatencyStats
    from mlperf_track.engine.validity import invalid_reasons

    if not results:
        raise ValueError("merge_results needs at least one result")
    case = results[0].case
    for other in results[1:]:
        if other.case != case:
            raise ValueError(f"cannot merge results of different cases: {case.name} and {other.case.name}")
    samples = tuple(value for result in results for value in result.samples_ms)
    counts = tuple(count for r in results for count in (r.replicate_counts or (len(r.samples_ms),)))
    blocks = tuple(block for r in results for block in r.blocks) if all(r.blocks for r in results) else ()
    stats = LatencyStats(samples, confidence=timing.confidence)
    throughput = block_throughput(blocks, case.batch_size) if blocks else stats.throughput(case.batch_size)
    metrics, notes = _merge_metrics(results, throughput)
    metrics.update(stats.as_dict())
    metrics[m.THROUGHPUT] = throughput
    metrics[m.LATENCY_REPLICATE_COUNT] = float(len(counts))
    merged = BenchmarkResult(case=case, samples_ms=samples, replicate_counts=counts)
    p50s = [float(statistics.median(part)) for part in merged.replicates]
    if len(p50s) > 1:
        metrics[m.LATENCY_P50_REPLICATE_CV] = statistics.stdev(p50s) / statistics.mean(p50s)
    else:
        notes[m.LATENCY_P50_REPLICATE_CV] = "one replicate: no between-replicate spread"
    sizes = sorted({calls for calls, _ in blocks})
    tags = {
        **_common_tags(results),
        "engine.replicates": str(len(counts)),
        "engine.p50_ci_rel_width": f"{stats.median_ci_rel_width:.4g}" if stats.median_ci else "undefined",
        "engine.throughput_method": ("block:" + "/".join(map(str, sizes))) if blocks else "per_call",
        "engine.replicate_stop_reasons": ",".join(r.tags.get("engine.stop_reason", "?") for r in results),
    }
    for result in results:
        notes = {**result.notes, **notes}
    warnings = tuple(dict.fromkeys(w for r in results for w in r.warnings))
    return replace(
        merged,
        metrics=metrics,
        blocks=blocks,
        tags=tags,
        notes={k: v for k, v in notes.items() if k not in metrics},
        warnings=warnings,
        invalid_reasons=invalid_reasons(samples, timing),
    )
