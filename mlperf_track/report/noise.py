"""Between-run noise for ``compare``: what a change must exceed before it is told apart from run-to-run spread.

The confidence interval of one run's median says how precisely that run knows its own median, not where the
next run will land: six identical runs on a 2-core machine spread over 5% while each claimed a 2% CI, and
``compare --fail-on p50:3%`` flagged 8 of their 30 ordered pairs. So a regression must also clear the
between-run spread, taken from (first that applies):

1. ``--noise-floor X%``: the user's figure for one run's relative spread on this machine (the between-run
   CV of p50, as ``benchmarks/min_duration.py`` or ``--repeats`` measure it);
2. replicates on both sides (``--repeats N``, N >= 2): a one-sided Welch t-test on the logs of the
   per-replicate statistics;
3. replicates on one side: that side's between-replicate CV, used as the floor for both runs;
4. none: only the within-run test applies, and the verdict says that run-to-run spread was not accounted for.

With a floor ``s`` per run, the log ratio of two runs of the same code has a spread of ``sqrt(2) * s``; the
change must exceed ``z(1 - alpha) * sqrt(2) * s`` (4.7% for ``s`` = 2% at alpha 0.05) to count.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from mlperf_track.errors import ConfigError
from mlperf_track.metrics import VALID_REASONS_TAG, VALID_TAG

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

NOISE_FLOOR: Final = "noise-floor"
REPLICATES: Final = "replicates"
RECORDED: Final = "recorded"
NONE: Final = "none"


@dataclass(frozen=True)
class Noise:
    """Which between-run spread a comparison used.

    Attributes:
        source: ``noise-floor``, ``replicates``, ``recorded`` or ``none``.
        floor: Relative spread of one run's statistic (``noise-floor`` and ``recorded``), else ``None``.
        detail: One phrase for the verdict (``"--noise-floor 4%"``, ``"3 vs 3 replicates"``, ...).
    """

    source: str
    floor: float | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready dict."""
        return {"source": self.source, "floor": self.floor, "detail": self.detail}


def parse_noise_floor(text: str) -> float:
    """``"4%"`` or ``"0.04"`` -> 0.04.

    Raises:
        ConfigError: Not a percentage in [0, 100) or a fraction in [0, 1).
    """
    allowed = "a percentage like 4% (or a fraction like 0.04), below 100%"
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(%?)\s*", str(text))
    if not match:
        raise ConfigError("--noise-floor", text, allowed)
    value = float(match.group(1)) / (100.0 if match.group(2) else 1.0)
    if not 0 <= value < 1:
        raise ConfigError("--noise-floor", text, allowed)
    return value


def replicate_cv(replicates: list[np.ndarray]) -> float | None:
    """Between-replicate coefficient of variation of the median (``None`` with fewer than 2 replicates)."""
    import numpy as np

    if len(replicates) < 2:
        return None
    medians = np.array([np.median(part) for part in replicates])
    return float(np.std(medians, ddof=1) / np.mean(medians))


def choose_noise(
    baseline_replicates: list[np.ndarray], candidate_replicates: list[np.ndarray], noise_floor: float | None
) -> Noise:
    """The between-run spread to use (see the module docstring for the order)."""
    if noise_floor is not None:
        return Noise(NOISE_FLOOR, noise_floor, f"--noise-floor {noise_floor:.2%}")
    nb, nc = len(baseline_replicates), len(candidate_replicates)
    if nb >= 2 and nc >= 2:
        return Noise(REPLICATES, None, f"{nb} vs {nc} replicates")
    for side, replicates in (("baseline", baseline_replicates), ("candidate", candidate_replicates)):
        cv = replicate_cv(replicates)
        if cv is not None:
            return Noise(RECORDED, cv, f"the {side}'s between-replicate CV {cv:.2%} ({len(replicates)} replicates)")
    return Noise(NONE, None, "no between-run spread known (pass --noise-floor, or run both sides with --repeats)")


def floor_bounds(ratio: float, floor: float, alpha: float) -> tuple[float, float]:
    """One-sided ``1 - alpha`` bounds of the true ratio when each run's statistic spreads by ``floor``."""
    from scipy.stats import norm

    margin = float(norm.ppf(1.0 - alpha)) * math.sqrt(2.0) * floor
    return ratio * math.exp(-margin), ratio * math.exp(margin)


def detectable_change(floor: float, alpha: float) -> float:
    """The smallest relative slowdown that clears a noise floor of ``floor`` per run."""
    from scipy.stats import norm

    return math.exp(float(norm.ppf(1.0 - alpha)) * math.sqrt(2.0) * floor) - 1.0


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
    import json

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
