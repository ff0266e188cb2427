"""Between-run noise for ``compare``: what a change must exceed before it is told apart from run-to-run spread.

The confidence interval of one run's median says how precisely that run knows its own median, not where the
next run will land: on the quiet 2-core machine, eight identical resnet18 runs (separate processes) had a
between-run CV of p50 of 1.8% while each run's own CI was far narrower, and ``compare --fail-on p50:3%``
flagged 11-14% of their ordered pairs. So a slowdown is called a regression only when it exceeds the user's
threshold AND is significant (one-sided, level ``alpha``, 95% by default) given the between-run spread, taken
from (first that applies):

1. replicates on both sides (``--repeats N``, N >= 2): a one-sided Welch t-test on the logs of the
   per-replicate statistics. Replicates of one process share that process's placement and state, so they can
   underestimate the spread between processes (the quiet gate run: 11% false alarms from 3 vs 3 replicates);
   when a noise floor is also given, the wider of the two bounds is used;
2. a noise floor: one run's between-run spread ``s`` (standard deviation of the log statistic, about its CV),
   either recorded by ``mlperf-track noise-floor`` from at least :data:`MIN_FLOOR_RUNS` runs in separate
   processes (``--noise-floor floor.json``; ``s`` is then known per statistic and its estimate's own
   uncertainty is counted: Student's t with runs - 1 degrees of freedom), or given as a figure
   (``--noise-floor 2%``, taken as known: the normal quantile);
3. replicates on one side only: that side's between-replicate spread as the floor (t with replicates - 1 dof);
4. none: the gate is threshold-only (plus the within-run tests), and the verdict says so.

With a floor ``s`` per run, the log ratio of two runs of the same code has a standard deviation of
``sqrt(2) * s``; the one-sided test calls the candidate slower when ``log(ratio) > q * sqrt(2) * s`` with
``q = z(1 - alpha)`` (or ``t(1 - alpha, runs - 1)``): 4.7% for ``s`` = 2% and a known floor, 5.5% for a
floor recorded from 8 runs. A real 10% slowdown clears both; two identical runs cross it in ``alpha`` of the
pairs.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from mlperf_track.errors import ConfigError
from mlperf_track.metrics import VALID_REASONS_TAG, VALID_TAG

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

NOISE_FLOOR: Final = "noise-floor"
RECORDED: Final = "recorded"
REPLICATES: Final = "replicates"
ONE_SIDE: Final = "one-side-replicates"
NONE: Final = "none"
#: Fewest separate runs a recorded noise floor is estimated from (fewer underestimate it: 4 runs gave 0.84%
#: against a between-run CV of 1.83% measured over 8, benchmarks/RESULTS.md).
MIN_FLOOR_RUNS: Final = 8
#: Format marker of a recorded noise-floor file.
FLOOR_FORMAT: Final = "mlperf_track.noise_floor/1"


@dataclass(frozen=True)
class RecordedFloor:
    """A machine's between-run spread, recorded from runs of one configuration in separate processes.

    Attributes:
        floors: Per statistic (``p50``, ``mean``, ...), the standard deviation of its log over the runs.
        runs: How many runs it was estimated from (at least :data:`MIN_FLOOR_RUNS`).
        description: What was measured (the runs' names), for the verdict and the reader.
    """

    floors: Mapping[str, float]
    runs: int
    description: str = ""

    def as_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready dict (what ``mlperf-track noise-floor`` writes)."""
        return {"format": FLOOR_FORMAT, "runs": self.runs, "floors": dict(self.floors), "description": self.description}


def load_noise_floor(path: Path) -> RecordedFloor:
    """Read a recorded noise floor written by ``mlperf-track noise-floor``.

    Raises:
        ConfigError: The file is not such a record, or it was estimated from fewer than 8 runs.
    """
    allowed = f"a file written by `mlperf-track noise-floor` (from >= {MIN_FLOOR_RUNS} runs)"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        floors = {str(name): float(value) for name, value in data["floors"].items()}
        runs = int(data["runs"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise ConfigError("--noise-floor", str(path), allowed) from None
    if data.get("format") != FLOOR_FORMAT or runs < MIN_FLOOR_RUNS or not floors:
        raise ConfigError("--noise-floor", str(path), allowed)
    if any(not (math.isfinite(value) and value >= 0) for value in floors.values()):
        raise ConfigError("--noise-floor", str(path), allowed, hint="a floor is negative or not a number")
    return RecordedFloor(floors, runs, str(data.get("description", "")))


@dataclass(frozen=True)
class Noise:
    """Which between-run spread a comparison used.

    Attributes:
        source: ``replicates``, ``recorded``, ``noise-floor``, ``one-side-replicates`` or ``none``.
        floor: One run's relative spread of p50 (the statistic the detail names), else ``None``.
        detail: One phrase for the verdict (``"--noise-floor 4%"``, ``"3 vs 3 replicates"``, ...).
        runs: Runs the floor was estimated from (its quantile is Student's t with ``runs - 1`` degrees of
            freedom); ``None`` when the floor is taken as known (normal quantile) or there is none.
        floors: Per-statistic floors of a recorded floor (``floor`` applies to statistics it lacks).
    """

    source: str
    floor: float | None
    detail: str
    runs: int | None = None
    floors: Mapping[str, float] = field(default_factory=dict)

    @property
    def threshold_only(self) -> bool:
        """Whether no between-run spread was known (the gate is then the threshold and the within-run tests)."""
        return self.source == NONE

    def floor_of(self, statistic: str) -> float | None:
        """The floor for ``statistic`` (``None`` when there is none)."""
        return self.floors.get(statistic, self.floor)

    def as_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready dict."""
        return {
            "source": self.source,
            "floor": self.floor,
            "detail": self.detail,
            "runs": self.runs,
            "floors": dict(self.floors),
            "threshold_only": self.threshold_only,
        }


def parse_noise_floor(text: str) -> float | RecordedFloor:
    """``"4%"`` or ``"0.04"`` -> 0.04; a path to a recorded floor -> its :class:`RecordedFloor`.

    Raises:
        ConfigError: Not a percentage in [0, 100), a fraction in [0, 1) or a recorded floor file.
    """
    path = Path(str(text)).expanduser()
    if path.suffix.lower() == ".json" or path.is_file():
        return load_noise_floor(path)
    allowed = "a percentage like 4% (or a fraction like 0.04), below 100%, or a file from `mlperf-track noise-floor`"
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(%?)\s*", str(text))
    if not match:
        raise ConfigError("--noise-floor", text, allowed)
    value = float(match.group(1)) / (100.0 if match.group(2) else 1.0)
    if not 0 <= value < 1:
        raise ConfigError("--noise-floor", text, allowed)
    return value


def replicate_cv(replicates: list[np.ndarray]) -> float | None:
    """Between-replicate spread of the median: sd of its log (``None`` with fewer than 2 replicates)."""
    import numpy as np

    if len(replicates) < 2:
        return None
    medians = np.array([np.median(part) for part in replicates])
    return float(np.std(np.log(medians), ddof=1))


def _floor_noise(noise_floor: float | RecordedFloor) -> Noise:
    if isinstance(noise_floor, RecordedFloor):
        p50 = noise_floor.floors.get("p50")
        what = f" of {noise_floor.description}" if noise_floor.description else ""
        return Noise(
            RECORDED,
            p50,
            f"recorded floor{what}: p50 {p50:.2%} over {noise_floor.runs} runs" if p50 is not None else
            f"recorded floor{what} over {noise_floor.runs} runs",
            noise_floor.runs,
            dict(noise_floor.floors),
        )  # fmt: skip
    return Noise(NOISE_FLOOR, noise_floor, f"--noise-floor {noise_floor:.2%}")


def choose_noise(
    baseline_replicates: list[np.ndarray],
    candidate_replicates: list[np.ndarray],
    noise_floor: float | RecordedFloor | None,
) -> Noise:
    """The between-run spread to use (see the module docstring for the order)."""
    nb, nc = len(baseline_replicates), len(candidate_replicates)
    if nb >= 2 and nc >= 2:
        if noise_floor is None:
            return Noise(REPLICATES, None, f"{nb} vs {nc} replicates")
        floor = _floor_noise(noise_floor)
        detail = f"{nb} vs {nc} replicates, or {floor.detail} where wider"
        return Noise(REPLICATES, floor.floor, detail, floor.runs, floor.floors)
    if noise_floor is not None:
        return _floor_noise(noise_floor)
    for side, replicates in (("baseline", baseline_replicates), ("candidate", candidate_replicates)):
        cv = replicate_cv(replicates)
        if cv is not None:
            detail = f"the {side}'s between-replicate spread {cv:.2%} ({len(replicates)} replicates)"
            return Noise(ONE_SIDE, cv, detail, len(replicates))
    return Noise(
        NONE,
        None,
        "none known: the gate is threshold-only (plus the within-run tests); pass --noise-floor "
        "(a file from `mlperf-track noise-floor`, or a figure), or run both sides with --repeats",
    )


def _quantile(alpha: float, runs: int | None) -> float:
    from scipy.stats import norm, t

    if runs is None:
        return float(norm.ppf(1.0 - alpha))
    return float(t.ppf(1.0 - alpha, max(runs - 1, 1)))


def floor_bounds(ratio: float, floor: float, alpha: float, runs: int | None = None) -> tuple[float, float]:
    """One-sided ``1 - alpha`` bounds of the true ratio when each run's log statistic spreads by ``floor``.

    ``runs``: how many runs the floor was estimated from (Student's t), or ``None`` for a known floor (normal).
    """
    margin = _quantile(alpha, runs) * math.sqrt(2.0) * floor
    return ratio * math.exp(-margin), ratio * math.exp(margin)


def detectable_change(floor: float, alpha: float, runs: int | None = None) -> float:
    """The smallest relative slowdown that clears a noise floor of ``floor`` per run."""
    return math.exp(_quantile(alpha, runs) * math.sqrt(2.0) * floor) - 1.0


def replicate_bounds(base_values: np.ndarray, cand_values: np.ndarray, alpha: float) -> tuple[float, float]:
    """One-sided ``1 - alpha`` bounds of the ratio from per-replicate values (Welch's t on their logs)."""
    import numpy as np
    from scipy.stats import t

    b, c = np.log(base_values), np.log(cand_values)
    diff = float(np.mean(c) - np.mean(b))
    vb, vc = float(np.var(b, ddof=1)) / b.size, float(np.var(c, ddof=1)) / c.size
    se = math.sqrt(vb + vc)
    if se == 0.0:
        return math.exp(diff), math.exp(diff)
    dof = (vb + vc) ** 2 / ((vb**2 / (b.size - 1) if vb else 0.0) + (vc**2 / (c.size - 1) if vc else 0.0))
    margin = float(t.ppf(1.0 - alpha, dof)) * se
    return math.exp(diff - margin), math.exp(diff + margin)


@dataclass(frozen=True)
class RunContext:
    """What ``compare`` needs besides the raw latencies: the replicates and the validity verdict of a run.

    Attributes:
        replicates: The samples split by replicate (empty when the run was not merged from replicates).
        valid: The run's validity verdict, or ``None`` when the source does not record one (a bare CSV).
        invalid_reasons: Why it is not valid.
    """

    replicates: tuple[np.ndarray, ...] = ()
    valid: bool | None = None
    invalid_reasons: tuple[str, ...] = ()


def _from_result_json(path: Path) -> RunContext:
    import numpy as np

    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict) and isinstance(data.get("results"), list) and len(data["results"]) == 1:
        data = data["results"][0]
    if not isinstance(data, dict):
        return RunContext()
    samples = np.asarray(data.get("samples_ms", []), dtype=float)
    counts = [int(count) for count in data.get("replicate_counts", [])]
    replicates = tuple(np.split(samples, np.cumsum(counts)[:-1])) if len(counts) > 1 else ()
    valid = data.get("valid")
    return RunContext(replicates, bool(valid) if valid is not None else None, tuple(data.get("invalid_reasons", [])))


def _from_samples_csv(path: Path) -> RunContext:
    import pandas as pd

    frame = pd.read_csv(path)
    replicates: tuple[np.ndarray, ...] = ()
    if "replicate" in frame.columns and frame["replicate"].nunique() > 1:
        groups = frame.groupby("replicate", sort=True)["latency_ms"]
        replicates = tuple(group.to_numpy(dtype=float) for _, group in groups)
    sibling = path.with_name("result.json")
    verdict = _from_result_json(sibling) if sibling.is_file() else RunContext()
    return RunContext(replicates, verdict.valid, verdict.invalid_reasons)


def run_context(ref: str, *, tracking_uri: str | None = None) -> RunContext:
    """Replicates and validity of a ``samples.csv``, a result JSON, a run id or a ``runs:/`` URI.

    Unreadable extras give an empty context: the latencies themselves are loaded (and checked) elsewhere.
    """
    path = Path(ref).expanduser()
    try:
        if path.is_file():
            return _from_result_json(path) if path.suffix.lower() == ".json" else _from_samples_csv(path)
        return _from_run(ref.removeprefix("runs:/").strip("/").split("/")[0], tracking_uri)
    except Exception:  # extras only: never fail a comparison because they cannot be read
        logger.debug("no replicates or validity for %s", ref, exc_info=True)
        return RunContext()


def _from_run(run_id: str, tracking_uri: str | None) -> RunContext:
    import tempfile

    from mlperf_track.report.runs import SAMPLES_ARTIFACT, client, download_artifact

    mlflow_client = client(tracking_uri)
    tags = mlflow_client.get_run(run_id).data.tags
    with tempfile.TemporaryDirectory(prefix="mlperf_track_compare_") as directory:
        path = download_artifact(mlflow_client, run_id, SAMPLES_ARTIFACT, Path(directory))
        replicates = _from_samples_csv(path).replicates if path is not None else ()
    valid = tags.get(VALID_TAG)
    reasons = tuple(part for part in tags.get(VALID_REASONS_TAG, "").split("; ") if part)
    return RunContext(replicates, None if valid is None else valid == "true", reasons)
