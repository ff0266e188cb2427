"""A deterministic fake of the hardware for tuning tests (Optuna, storages and MLflow stay real).

The fake "measures" a case with closed-form formulas: throughput rises with the batch size and saturates,
memory grows linearly with it, bf16 is faster and lighter than fp32, and past a memory capacity the case runs
out of memory. It has the optional surface of a real backend: ``measure(case, timing=...)`` (a short
measurement gives the same median with a wider CI), ``last_costs`` (preparation seconds per configuration, paid
once while the configuration stays prepared, and measurement seconds), ``is_prepared``, ``has_variant`` and a
simulated ``clock`` that every measurement advances by its cost. ``make_fake_backend`` is the ``--backend``
factory the worker subprocesses use; the environment variables ``MLPERF_TRACK_FAKE_DELAY_S`` (seconds per
measurement) and ``MLPERF_TRACK_FAKE_MARKER_DIR`` (a directory where each measurement drops
``<pid>-<case>.start``) let a test find a worker in the middle of a trial.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mlperf_track import metrics as m
from mlperf_track.engine.result import BenchmarkResult
from mlperf_track.errors import ExportError, OutOfMemoryError
from mlperf_track.pipeline.events import CaseOutcome
from mlperf_track.spec import CaseSpec, TimingConfig
from mlperf_track.tuning.config import TuneConfig
from mlperf_track.tuning.costs import TrialCosts
from mlperf_track.tuning.space import Choice, SearchSpace

if TYPE_CHECKING:
    from mlflow.entities import Run

#: Samples/s at saturation, by (runtime, precision).
PEAK = {("eager", "fp32"): 400.0, ("eager", "bf16"): 700.0, ("onnxruntime", "fp32"): 550.0}
#: MB per sample in a batch, by precision.
MB_PER_SAMPLE = {"fp32": 12.0, "bf16": 6.0}
BASE_MB = 300.0
#: Top-1 by precision (the baseline fp32 is the reference).
TOP1 = {"fp32": 0.90, "bf16": 0.885}


def fake_metrics(case: CaseSpec) -> dict[str, float]:
    """The fake's measurement of ``case``."""
    peak = PEAK[(case.runtime, case.precision)]
    threads = case.num_threads or 1
    throughput = peak * (threads / (threads + 1)) * 2 * case.batch_size / (case.batch_size + 8)
    p99 = 1000.0 * case.batch_size / throughput * 1.2
    return {
        m.THROUGHPUT: throughput,
        m.LATENCY_P50: p99 / 1.2,
        m.LATENCY_P50_CI_LOW: p99 / 1.2 * 0.99,
        m.LATENCY_P50_CI_HIGH: p99 / 1.2 * 1.01,
        m.LATENCY_P99: p99,
        m.CPU_RSS_PEAK: BASE_MB + MB_PER_SAMPLE[case.precision] * case.batch_size,
        m.ACCURACY_TOP1: TOP1[case.precision],
        m.ACCURACY_TOP1_DELTA: TOP1[case.precision] - TOP1["fp32"],
    }


@dataclass
class FakeBackend:
    """A :class:`~mlperf_track.tuning.backend.TuningBackend` measuring with :func:`fake_metrics`.

    Attributes:
        space: The search space it reports.
        capacity_mb: Memory of the fake machine: a case needing more runs out of memory.
        failing: Configuration keys whose cases fail (as an export error would).
        measures_accuracy: Whether results carry accuracy metrics.
        delay_s: Seconds each measurement takes.
        marker_dir: Where to drop a file when a measurement starts.
        metrics: The measurement function (replaceable).
        prepare_s: Simulated seconds to prepare a configuration (by configuration key; default 10).
        short_s: Simulated seconds of a short measurement; ``full_s`` of a full one.
        short_ci: Relative half-width of the median's CI of a short measurement.
        keep: Prepared configurations kept (least recently used dropped).
        now: The simulated clock.
    """

    space: SearchSpace
    capacity_mb: float = 1e9
    failing: frozenset[str] = frozenset()
    measures_accuracy: bool = True
    delay_s: float = 0.0
    marker_dir: Path | None = None
    metrics: Callable[[CaseSpec], dict[str, float]] = fake_metrics
    device: str = "cpu"
    prepare_s: dict[str, float] = field(default_factory=dict)
    short_s: float = 0.5
    full_s: float = 3.0
    short_ci: float = 0.1
    keep: int = 2
    now: float = 0.0
    measured: list[CaseSpec] = field(default_factory=list)
    timings: list[TimingConfig | None] = field(default_factory=list)
    prepared: list[str] = field(default_factory=list)
    closed: bool = False
    _costs: TrialCosts | None = None

    def search_space(self) -> SearchSpace:
        return self.space

    def template(self) -> CaseSpec:
        return CaseSpec(model="fakenet", device=self.device, image_size=32, dataset="digits")

    def clock(self) -> float:
        return self.now

    def is_prepared(self, case: CaseSpec) -> bool:
        return self._key(case) in self.prepared

    def has_variant(self, name: str) -> bool:
        return True

    def last_costs(self) -> TrialCosts | None:
        return self._costs

    @staticmethod
    def _key(case: CaseSpec) -> str:
        return Choice(case.variant, case.runtime, case.precision, case.options).key

    def _pay(self, case: CaseSpec, timing: TimingConfig | None) -> TrialCosts:
        key = self._key(case)
        prepare = 0.0
        if key in self.prepared:
            self.prepared.remove(key)
        else:
            prepare = self.prepare_s.get(key, 10.0)
        self.prepared = [*self.prepared, key][-self.keep :]
        measure = self.short_s if timing is not None and timing.max_time_s <= 1.0 else self.full_s
        self.now += prepare + measure
        return TrialCosts(prepare, measure, prepared=prepare > 0)

    def measure(self, case: CaseSpec, timing: TimingConfig | None = None) -> CaseOutcome:
        self.measured.append(case)
        self.timings.append(timing)
        self._costs = self._pay(case, timing)
        if self.marker_dir is not None:
            (self.marker_dir / f"{os.getpid()}-{case.name}.start").touch()
        if self.delay_s:
            time.sleep(self.delay_s)
        metrics = self.metrics(case)
        key = self._key(case)
        if key in self.failing:
            return CaseOutcome(case, error=ExportError(f"cannot export {key}"))
        if metrics.get(m.CPU_RSS_PEAK, 0.0) > self.capacity_mb:
            return CaseOutcome(case, error=OutOfMemoryError(f"{case.name} needs {metrics[m.CPU_RSS_PEAK]:.0f} MB"))
        if not self.measures_accuracy:
            metrics = {k: v for k, v in metrics.items() if not k.startswith("accuracy/")}
        if timing is not None and m.LATENCY_P50 in metrics:
            p50 = metrics[m.LATENCY_P50]
            metrics[m.LATENCY_P50_CI_LOW], metrics[m.LATENCY_P50_CI_HIGH] = (
                p50 * (1 - self.short_ci),
                p50 * (1 + self.short_ci),
            )
        return CaseOutcome(case, result=BenchmarkResult(case, metrics, samples_ms=(1.0, 2.0)))

    def close(self) -> None:
        self.closed = True


def small_space(batch_sizes: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128)) -> SearchSpace:
    """eager fp32/bf16 and onnxruntime fp32 x ``batch_sizes``."""
    choices = (
        Choice("baseline", "eager", "fp32"),
        Choice("baseline", "eager", "bf16"),
        Choice("baseline", "onnxruntime", "fp32"),
    )
    return SearchSpace(choices, batch_sizes)


def make_fake_backend(config: TuneConfig) -> FakeBackend:
    """``--backend tuning_fakes:make_fake_backend``: the fake with the config's batch sizes."""
    marker = os.environ.get("MLPERF_TRACK_FAKE_MARKER_DIR")
    return FakeBackend(
        space=small_space(config.pipeline.batch_sizes),
        capacity_mb=float(os.environ.get("MLPERF_TRACK_FAKE_CAPACITY_MB", "1e9")),
        delay_s=float(os.environ.get("MLPERF_TRACK_FAKE_DELAY_S", "0")),
        marker_dir=Path(marker) if marker else None,
    )


def runs_of(experiment: str) -> list[Run]:
    """Every run of ``experiment`` (parent and nested)."""
    import mlflow

    return list(mlflow.search_runs(experiment_names=[experiment], output_format="list", max_results=1000))
