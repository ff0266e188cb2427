"""The plain result object of one measured case.

A :class:`BenchmarkResult` is what the engine hands upwards: the case, its metrics keyed by the names in
:mod:`mlperf_track.metrics`, the raw per-iteration latencies, facts as tags, and for every metric that could
not be measured a note saying why. It knows nothing of MLflow or Optuna; those layers adapt it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mlperf_track.spec import CaseSpec

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class BenchmarkResult:
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
    """

    case: CaseSpec
    metrics: dict[str, float] = field(default_factory=dict)
    samples_ms: tuple[float, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    invalid_reasons: tuple[str, ...] = ()

    @property
    def valid(self) -> bool:
        """Whether the measurement can be trusted and ranked (no :attr:`invalid_reasons`)."""
        return not self.invalid_reasons

    def __post_init__(self) -> None:
        for key, value in self.metrics.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise ValueError(f"metric {key!r} has the non-finite or non-numeric value {value!r}")

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
        )

    def to_json(self, indent: int | None = 2) -> str:
        """The result as a JSON string."""
        return json.dumps(self.to_dict(), indent=indent)

    def write_json(self, path: str | Path) -> Path:
        """Write :meth:`to_json` to ``path`` and return the path."""
        target = Path(path)
        target.write_text(self.to_json(), encoding="utf-8")
        return target


def results_to_json(results: list[BenchmarkResult], indent: int | None = 2) -> str:
    """Several results as one JSON document (``{"results": [...]}``)."""
    return json.dumps({"schema_version": SCHEMA_VERSION, "results": [r.to_dict() for r in results]}, indent=indent)


def results_from_json(text: str) -> list[BenchmarkResult]:
    """Inverse of :func:`results_to_json`."""
    return [BenchmarkResult.from_dict(item) for item in json.loads(text)["results"]]
