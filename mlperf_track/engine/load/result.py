"""The plain result of one load point: metrics, verdict, and every query's timestamps.

Like :class:`~mlperf_track.engine.result.BenchmarkResult`, a :class:`LoadResult` knows nothing of MLflow; it
round-trips through JSON and keeps the raw per-query records, so any statistic can be recomputed.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlperf_track.engine.json_file import JsonRecord
from mlperf_track.engine.load.config import DeploymentConfig, LoadConfig

SCHEMA_VERSION = 1
#: Columns of the per-query table (times in ms from the start of the run; -1 when never reached).
QUERY_COLUMNS = ("index", "client", "samples", "arrival_ms", "issued_ms", "start_ms", "end_ms", "status", "batch")


@dataclass(frozen=True)
class LoadResult(JsonRecord):
    """One load point.

    Attributes:
        config: The scenario as asked.
        deployment: The deployment it met.
        metrics: ``load/*`` metrics (:mod:`mlperf_track.metrics`); one that cannot be measured is absent.
        queries: One row per issued query, with :data:`QUERY_COLUMNS`.
        tags: How it ran (executor, clock, target, resources).
        notes: Why a metric is absent, keyed by metric.
        warnings: The generator fell behind, the deployment did not keep up, ...
        invalid_reasons: Why the run is INVALID by LoadGen's rules (empty: VALID).
    """

    config: LoadConfig
    deployment: DeploymentConfig
    metrics: dict[str, float] = field(default_factory=dict)
    queries: tuple[tuple[Any, ...], ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    invalid_reasons: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for key, value in self.metrics.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise ValueError(f"metric {key!r} has the non-finite or non-numeric value {value!r}")

    @property
    def valid(self) -> bool:
        """Whether LoadGen's rules hold (no :attr:`invalid_reasons`)."""
        return not self.invalid_reasons

    @property
    def verdict(self) -> str:
        """``VALID`` or ``INVALID``."""
        return "VALID" if self.valid else "INVALID"

    @property
    def label(self) -> str:
        """The point's short name (:attr:`LoadConfig.label`), used as the child run name."""
        return self.config.label

    def column(self, name: str) -> list[Any]:
        """One column of :attr:`queries` by its name in :data:`QUERY_COLUMNS`."""
        index = QUERY_COLUMNS.index(name)
        return [row[index] for row in self.queries]

    def tail_split(self, percentile: float = 0.99) -> tuple[float, float, float] | None:
        """The ``percentile`` latency, and the mean queueing and compute (ms) of the queries at or above it.

        What the slowest queries spent their time on; ``None`` when no query completed.
        """
        import numpy as np

        rows = [row for row in self.queries if row[7] == "ok"]
        if not rows:
            return None
        arrival, start, end = (np.asarray([row[i] for row in rows], dtype=np.float64) for i in (3, 5, 6))
        latency = end - arrival
        cutoff = np.sort(latency)[min(len(rows) - 1, math.floor(len(rows) * percentile))]
        tail = latency >= cutoff
        return float(cutoff), float(np.mean(start[tail] - arrival[tail])), float(np.mean(end[tail] - start[tail]))

    def with_metrics(self, metrics: dict[str, float]) -> LoadResult:
        """A copy with ``metrics`` merged in."""
        from dataclasses import replace

        return replace(self, metrics={**self.metrics, **metrics})

    def with_tags(self, tags: dict[str, str]) -> LoadResult:
        """A copy with ``tags`` merged in."""
        from dataclasses import replace

        return replace(self, tags={**self.tags, **tags})

    def params(self) -> dict[str, str]:
        """The scenario and deployment as MLflow params."""
        return {**self.config.params(), **self.deployment.params()}

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready dict (queries as columns)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "config": {key: value for key, value in self.config.__dict__.items()},
            "deployment": {key: value for key, value in self.deployment.__dict__.items()},
            "metrics": dict(self.metrics),
            "queries": {name: self.column(name) for name in QUERY_COLUMNS},
            "tags": dict(self.tags),
            "notes": dict(self.notes),
            "warnings": list(self.warnings),
            "valid": self.valid,
            "invalid_reasons": list(self.invalid_reasons),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoadResult:
        """Inverse of :meth:`to_dict`."""
        columns = data.get("queries", {})
        rows = tuple(zip(*(columns.get(name, []) for name in QUERY_COLUMNS), strict=True)) if columns else ()
        return cls(
            config=LoadConfig(**data["config"]),
            deployment=DeploymentConfig(**data["deployment"]),
            metrics={key: float(value) for key, value in data.get("metrics", {}).items()},
            queries=rows,
            tags={key: str(value) for key, value in data.get("tags", {}).items()},
            notes={key: str(value) for key, value in data.get("notes", {}).items()},
            warnings=tuple(str(value) for value in data.get("warnings", [])),
            invalid_reasons=tuple(str(value) for value in data.get("invalid_reasons", [])),
        )

    def write_queries_csv(self, path: str | Path) -> Path:
        """Write the per-query table as CSV (header :data:`QUERY_COLUMNS`)."""
        target = Path(path)
        with target.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(QUERY_COLUMNS)
            writer.writerows(self.queries)
        return target
