"""The replay table of ``benchmarks/search_efficiency.py``: measured once, replayed for every strategy and seed.

Measuring (:func:`measure_table`): every point of a fixed space (variant x runtime x precision x runtime
option x batch size) is measured with the tuner's own backend
(:class:`~mlperf_track.tuning.backend.SessionBackend`) at both fidelities the tuner uses: the short first
measurement, then the full adaptive one. Each record keeps the costs the backend reported: the variant's build
(each variant built from scratch: the recipes' memo is cleared, so a composition's build includes its first
step), the preparation of the point's preparation key (export, compile, engine build, first call, accuracy
pass; per batch size for a runtime that compiles per batch size), and each measurement's seconds. Inductor's
and the runtimes' on-disk caches point at fresh folders, so every preparation is a cold one. One JSON line
per point, appended as soon as it is measured: an interrupted build resumes where it stopped
(``--resume``), and it can run in the background (``nohup ... &``).

Replaying (:class:`ReplayBackend`): a :class:`~mlperf_track.tuning.backend.TuningBackend` that answers from
the table on a simulated clock, with the same caching rules as the real backend (a variant is built once;
prepared models are kept least-recently-used, two on a CPU; a runtime that compiles per batch size prepares
each batch size), so a strategy's wall time is what the real study would have spent, preparation included.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlperf_track import metrics as m
from mlperf_track.engine.result import BenchmarkResult
from mlperf_track.pipeline.events import CaseOutcome
from mlperf_track.spec import CaseSpec, TimingConfig
from mlperf_track.tuning.config import TuneConfig
from mlperf_track.tuning.costs import TrialCosts
from mlperf_track.tuning.pruning import short_timing
from mlperf_track.tuning.space import Choice, SearchSpace, TrialPoint
from mlperf_track.variants.compose import prefixes

logger = logging.getLogger("search_replay")

DATA = Path(__file__).resolve().parent / "data"
#: Metrics kept per measurement (the rest is not read by the tuner or the benchmark).
KEPT = (
    m.THROUGHPUT,
    m.LATENCY_P50,
    m.LATENCY_P50_CI_LOW,
    m.LATENCY_P50_CI_HIGH,
    m.LATENCY_P99,
    m.CPU_RSS_PEAK,
    m.ACCURACY_TOP1,
    m.ACCURACY_TOP1_DELTA,
    m.ACCURACY_TOP1_DELTA_CI_LOW,
    m.ACCURACY_TOP1_DELTA_CI_HIGH,
    m.STARTUP_PREPARE,
)
#: Prepared models the replay keeps, as the real backend does on a CPU without a memory limit.
KEEP_PREPARED = 2


@dataclass(frozen=True)
class TableSetup:
    """What one table measures."""

    model: str
    image_size: int
    variants: tuple[str, ...]
    runtimes: tuple[str, ...]
    precisions: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    option_values: tuple[tuple[str, tuple[str, ...]], ...]
    short_time_s: float = 0.3
    #: Option keys whose values beyond the first are measured for the baseline only (to keep the table's
    #: compile time in hours, not days: every compile mode is a compile per batch size).
    baseline_only_values: tuple[str, ...] = ()

    def wanted(self, choice: Choice) -> bool:
        """Whether the table measures ``choice``."""
        if choice.variant == "baseline":
            return True
        firsts = {key: values[0] for key, values in self.option_values}
        return all(firsts.get(key) == value for key, value in choice.options if key in self.baseline_only_values)

    def config(self, cache: Path) -> TuneConfig:
        """The study configuration whose space and backend measure the table."""
        return TuneConfig.create(
            self.model,
            device="cpu",
            image_size=self.image_size,
            variants=self.variants,
            runtimes=self.runtimes,
            precisions=self.precisions,
            batch_sizes=self.batch_sizes,
            option_values=self.option_values,
            compositions=False,
            storage="none",
            warm_start="none",
            short_time_s=self.short_time_s,
            cache_dir=cache,
            output_dir=cache / "out",
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        data = self.__dict__.copy()
        data["option_values"] = {key: list(values) for key, values in self.option_values}
        data["baseline_only_values"] = list(self.baseline_only_values)
        return data


def _kept(result: BenchmarkResult) -> dict[str, float]:
    # 6 significant digits: far below the measurements' noise, and it keeps a model's table near 100 KB
    return {key: float(f"{float(result.metrics[key]):.6g}") for key in KEPT if key in result.metrics}


def _records(path: Path) -> Iterator[dict[str, Any]]:
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                yield json.loads(line)


def measure_table(setup: TableSetup, path: Path, *, resume: bool = True, scratch: Path | None = None) -> Path:
    """Measure every point of ``setup`` into ``path`` (JSON lines), skipping points already there."""
    import tempfile

    from mlperf_track.tuning.backend import SessionBackend
    from mlperf_track.variants.memo import forget_all

    scratch = scratch or Path(tempfile.mkdtemp(prefix="search-table-"))
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(scratch / "inductor"))  # cold compiles
    done = {(r["config"], r["batch_size"]) for r in _records(path) if r.get("kind") == "point"} if resume else set()
    if not resume and path.exists():
        path.unlink()
    config = setup.config(scratch / "cache")
    started = time.perf_counter()
    backend = SessionBackend(config)
    try:
        space = backend.search_space()
        baseline_s = time.perf_counter() - started
        template = backend.template()
        short = short_timing(config.pipeline.timing, setup.short_time_s)
        per_batch = sorted(
            name
            for name in config.pipeline.runtimes
            if backend.session.runtime(name).capabilities().per_batch_preparation
        )
        with path.open("a", encoding="utf-8") as out:
            if not done:
                header = {
                    "kind": "setup",
                    "setup": setup.to_dict(),
                    "template": template.to_dict(),
                    "space": {**space.to_dict(), "choices": [c.key for c in space.choices if setup.wanted(c)]},
                    "per_batch_runtimes": per_batch,
                    "baseline_s": baseline_s,
                    "full_timing": config.pipeline.timing.to_dict(),
                    "load_average": os.getloadavg()[0],
                }
                out.write(json.dumps(header) + "\n")
            for choice in (choice for choice in space.choices if setup.wanted(choice)):
                if not backend.has_variant(choice.variant):
                    forget_all()  # built from scratch: the recipes' memo would share a composition's first step
                for batch in space.batch_sizes:
                    if (choice.key, batch) in done:
                        continue
                    record = _measure_point(backend, TrialPoint(choice, batch).to_case(template), short)
                    record.update(config=choice.key, batch_size=batch, load_average=os.getloadavg()[0])
                    out.write(json.dumps(record) + "\n")
                    out.flush()
                    logger.info("%s bs%d: %s", choice.key, batch, record.get("error") or record["full"][m.THROUGHPUT])
    finally:
        backend.close()
    return path


def _measure_point(backend: Any, case: CaseSpec, short: TimingConfig) -> dict[str, Any]:
    record: dict[str, Any] = {"kind": "point"}
    first = backend.measure(case, timing=short)
    costs: TrialCosts = backend.last_costs()
    record.update(variant_build_s=costs.variant_build_s, prepare_s=costs.prepare_s - costs.variant_build_s)
    if first.result is None:
        record["error"] = f"{type(first.error).__name__}: {first.error}"
        return record
    record["short"] = {**_kept(first.result), "measure_s": costs.measure_s}
    full = backend.measure(case)
    costs = backend.last_costs()
    if full.result is None:
        record["error"] = f"{type(full.error).__name__}: {full.error}"
        return record
    record["full"] = {**_kept(full.result), "measure_s": costs.measure_s, "valid": full.result.valid}
    return record


@dataclass
class ReplayTable:
    """A measured table: its setup, space, template and the records by point."""

    setup: dict[str, Any]
    space: SearchSpace
    template: CaseSpec
    per_batch_runtimes: frozenset[str]
    full_timing: TimingConfig
    baseline_s: float
    points: dict[tuple[str, int], dict[str, Any]]

    @classmethod
    def load(cls, path: Path) -> ReplayTable:
        """Read a table written by :func:`measure_table` (keeps the points that were measured)."""
        header: dict[str, Any] | None = None
        points: dict[tuple[str, int], dict[str, Any]] = {}
        for record in _records(path):
            if record.get("kind") == "setup" and header is None:
                header = record
            elif record.get("kind") == "point":
                points[(record["config"], int(record["batch_size"]))] = record
        if header is None:
            raise ValueError(f"{path} has no setup record")
        data = header["space"]
        measured = [key for key in data["choices"] if any((key, b) in points for b in data["batch_sizes"])]
        space = SearchSpace(tuple(Choice.from_key(key) for key in measured), tuple(data["batch_sizes"]))
        return cls(
            setup=header["setup"],
            space=space,
            template=CaseSpec.from_dict(header["template"]),
            per_batch_runtimes=frozenset(header["per_batch_runtimes"]),
            full_timing=TimingConfig(**header["full_timing"]),
            baseline_s=float(header["baseline_s"]),
            points=points,
        )

    def record(self, point: TrialPoint) -> dict[str, Any] | None:
        """The record of a point (``None`` when it was never measured)."""
        return self.points.get((point.choice.key, point.batch_size))

    def preparation_key(self, point: TrialPoint) -> tuple[str, int]:
        """What a prepared model serves: the configuration, and the batch size for a per-batch runtime."""
        return (point.choice.key, point.batch_size if point.choice.runtime in self.per_batch_runtimes else 0)

    def build_s(self, variant: str) -> float:
        """Seconds its table recorded for building ``variant`` from already built steps (0 for the baseline)."""
        return max(
            (
                float(record.get("variant_build_s", 0.0))
                for (key, _), record in self.points.items()
                if Choice.from_key(key).variant == variant
            ),
            default=0.0,
        )

    def grid_cost_s(self) -> float:
        """Wall time of measuring every point once in grid order (each variant built and each key prepared once)."""
        built: set[str] = set()
        prepared: set[tuple[str, int]] = set()
        total = 0.0
        for point in self.space.points():
            record = self.record(point)
            if record is None:
                continue
            if point.choice.variant not in built:
                built.add(point.choice.variant)
                total += float(record.get("variant_build_s", 0.0))
            key = self.preparation_key(point)
            if key not in prepared:
                prepared.add(key)
                total += float(record.get("prepare_s", 0.0))
            total += float(record.get("full", {}).get("measure_s", 0.0))
        return total


@dataclass
class ReplayBackend:
    """A :class:`~mlperf_track.tuning.backend.TuningBackend` answering from a :class:`ReplayTable` (module docstring).

    Attributes:
        table: The table.
        short: The short measurement's timing (a call with it gets the short record).
        keep: Prepared models kept.
        now: The simulated clock.
    """

    table: ReplayTable
    short: TimingConfig
    keep: int = KEEP_PREPARED
    now: float = 0.0
    device: str = "cpu"
    measures_accuracy: bool = True
    built: set[str] = field(default_factory=lambda: {"baseline"})
    prepared: list[tuple[str, int]] = field(default_factory=list)
    calls: list[tuple[str, int, str]] = field(default_factory=list)
    _costs: TrialCosts | None = None

    def search_space(self) -> SearchSpace:
        """The table's space."""
        return self.table.space

    def template(self) -> CaseSpec:
        """The table's case template."""
        return self.table.template

    def clock(self) -> float:
        """The simulated clock."""
        return self.now

    def is_prepared(self, case: CaseSpec) -> bool:
        """Whether the point's prepared model is held."""
        return self.table.preparation_key(self._point(case)) in self.prepared

    def has_variant(self, name: str) -> bool:
        """Whether the variant was built."""
        return name in self.built

    def last_costs(self) -> TrialCosts | None:
        """The costs of the last call."""
        return self._costs

    def _point(self, case: CaseSpec) -> TrialPoint:
        options = tuple(item for item in case.options if item not in self.table.template.options)
        return TrialPoint(Choice(case.variant, case.runtime, case.precision, options), case.batch_size)

    def measure(self, case: CaseSpec, timing: TimingConfig | None = None) -> CaseOutcome:
        """The recorded result; the clock advances by the recorded costs."""
        point = self._point(case)
        record = self.table.record(point)
        fidelity = "short" if timing is not None and timing == self.short else "full"
        self.calls.append((point.choice.key, point.batch_size, fidelity))
        if record is None:
            self._costs = TrialCosts(0.0, 0.0, stage="case")
            return CaseOutcome(case, error=RuntimeError(f"{case.name} was not measured in the table"))
        # Each leading step not built yet is built now: the table was measured steps first (``a`` before ``a+b``),
        # so a composition's recorded time is only its last step's, and one proposed first pays for its steps.
        built = tuple(name for name in prefixes(point.choice.variant) if name not in self.built)
        build = sum(self.table.build_s(name) for name in built)
        self.built.update(built)
        key = self.table.preparation_key(point)
        prepare = 0.0
        if key in self.prepared:
            self.prepared.remove(key)
        else:
            prepare = float(record.get("prepare_s", 0.0))
        self.prepared = [*self.prepared, key][-self.keep :]
        data = record.get(fidelity)
        if data is None:
            self.now += build + prepare
            self._costs = TrialCosts(build + prepare, 0.0, build, prepared=prepare > 0, stage="case", built=built)
            return CaseOutcome(case, error=RuntimeError(record.get("error", "failed")))
        measure = float(data["measure_s"])
        if timing is not None and fidelity == "full":  # a window capped by the time budget
            measure = min(measure, timing.max_time_s + 0.5)
        self.now += build + prepare + measure
        self._costs = TrialCosts(build + prepare, measure, build, prepared=prepare > 0, built=built)
        metrics = {key: value for key, value in data.items() if key not in ("measure_s", "valid")}
        return CaseOutcome(case, result=BenchmarkResult(case, metrics, samples_ms=(1.0,)))

    def close(self) -> None:
        """Nothing to release."""


def optimum(table: ReplayTable, maximize: bool = True, memory_limit_mb: float | None = None,
            max_accuracy_drop: float | None = 0.01) -> tuple[float, TrialPoint]:  # fmt: skip
    """The best full-fidelity throughput of the table under the limits (what exhaustive search finds)."""
    best: tuple[float, TrialPoint] | None = None
    for point in table.space.points():
        record = table.record(point)
        full = (record or {}).get("full")
        if not full or m.THROUGHPUT not in full:
            continue
        if memory_limit_mb is not None and full.get(m.CPU_RSS_PEAK, math.inf) > memory_limit_mb:
            continue
        delta = full.get(m.ACCURACY_TOP1_DELTA)
        if max_accuracy_drop is not None and delta is not None and -delta > max_accuracy_drop:
            continue
        value = float(full[m.THROUGHPUT])
        if best is None or (value > best[0] if maximize else value < best[0]):
            best = (value, point)
    if best is None:
        raise ValueError("no feasible point in the table")
    return best


def replay_config(table: ReplayTable, **search: Any) -> TuneConfig:
    """A study configuration over the table (its model and timing, a search setting per keyword)."""
    return TuneConfig.create(
        table.template.model,
        device="cpu",
        image_size=table.template.image_size,
        runtimes=tuple(sorted({choice.runtime for choice in table.space.choices})),
        precisions=("fp32",),
        batch_sizes=table.space.batch_sizes,
        dataset=table.template.dataset,
        timing=table.full_timing,
        storage="none",
        warm_start="none",
        **search,
    )


def short_of(config: TuneConfig) -> TimingConfig:
    """The short timing the tuner derives for ``config`` (the replay backend recognises it)."""
    return short_timing(config.pipeline.timing, config.search.short_time_s or 0.3)
