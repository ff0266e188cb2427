"""Does ``compare --fail-on p50:3%`` gate CI honestly? A/A false alarms and detection of a real 10% slowdown.

Fresh worker processes measure one configuration (default resnet18, 64 px, batch 1, the CPU timing users
get), alternating A (the model) and B (the same model, same weights, with a real slowdown: a busy-wait after
every forward calibrated to ``--slowdown`` of A's median latency, so every call does proportionally more
work; nothing is scaled after the fact). Every run records ``--replicates`` back-to-back replicates.

Before them, ``--calibration-runs`` (>= 8) further A runs, one replicate each and each in its own process,
record the machine's noise floor exactly as ``mlperf-track noise-floor`` does (the between-run spread of every
statistic); the scored runs never enter it. From the scored runs, the gate is scored four ways over all
ordered pairs:

* ``threshold-only``: one replicate per run, no between-run spread known (the compare of round one);
* ``recorded floor``: one replicate per run, ``compare --noise-floor FLOOR.json`` with the recorded floor;
* ``replicates``: every replicate of both runs (what ``--repeats N`` records), Welch on the replicates;
* ``replicates + floor``: both, the wider bound wins (what ``compare`` does when given both).

A/A false-alarm rate: ordered pairs of A runs that the gate calls a regression (target <= 5%). Detection rate:
(A, B) pairs it calls a regression (target >= 95%). Usage::

    python benchmarks/regression_gate.py --threads 1        # 8 + 8 runs x 3 replicates + 8 calibration runs
                                                            # (~5 min on a quiet 2-core machine)
    python benchmarks/regression_gate.py --quick            # small smoke run (~2 min)
    python benchmarks/regression_gate.py --markdown benchmarks/RESULTS.md --floor-output floor.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import logging
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from mlperf_track.report.noise import RecordedFloor

ROOT = Path(__file__).resolve().parents[1]
THRESHOLD = "p50:3%"
TARGET_FALSE_ALARMS = 0.05
TARGET_DETECTION = 0.95
logger = logging.getLogger("regression_gate")


# -- worker ---------------------------------------------------------------------------------------------------


def _spin(seconds: float) -> None:
    end = time.perf_counter_ns() + round(seconds * 1e9)
    while time.perf_counter_ns() < end:
        pass


def _worker(args: argparse.Namespace) -> None:
    """Measure ``--replicates`` replicates of the model (plus ``--spin-ms`` per call) and write the merged JSON."""
    sys.path.insert(0, str(ROOT))
    import torch
    import torchvision

    from mlperf_track.engine.measure import measure_callable
    from mlperf_track.engine.result import merge_results
    from mlperf_track.pipeline.defaults import auto_defaults
    from mlperf_track.spec import CaseSpec

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = getattr(torchvision.models, args.model)(weights=None).eval()
    inputs = torch.randn(args.batch_size, 3, args.image_size, args.image_size, generator=torch.Generator())
    spin_s = args.spin_ms / 1e3

    def call() -> None:
        model(inputs)
        if spin_s:
            _spin(spin_s)

    timing = auto_defaults("cpu")["timing"]
    if args.min_time is not None:
        timing = type(timing)(**{**timing.to_dict(), "min_time_s": args.min_time})
    case = CaseSpec(model=args.model, batch_size=args.batch_size, image_size=args.image_size)
    with torch.inference_mode():
        parts = [
            measure_callable(call, device="cpu", batch_size=args.batch_size, timing=timing, monitors=False).to_result(
                case
            )
            for _ in range(args.replicates)
        ]
    Path(args.output).write_text(merge_results(parts, timing).to_json(), encoding="utf-8")


def _spawn(args: argparse.Namespace, output: Path, spin_ms: float, replicates: int) -> Path:
    command = [
        sys.executable, str(Path(__file__).resolve()), "--worker", "--output", str(output), "--model", args.model,
        "--image-size", str(args.image_size), "--batch-size", str(args.batch_size), "--replicates", str(replicates),
        "--spin-ms", f"{spin_ms:.6f}",
    ]  # fmt: skip
    if args.threads:
        command += ["--threads", str(args.threads)]
    if args.min_time is not None:
        command += ["--min-time", str(args.min_time)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(command, check=True, env=env, capture_output=True, text=True)
    return output


# -- scoring --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One worker's samples, split by replicate."""

    replicates: list[np.ndarray]

    @property
    def first(self) -> np.ndarray:
        return self.replicates[0]

    @property
    def merged(self) -> np.ndarray:
        return np.concatenate(self.replicates)


def _load(path: Path) -> Run:
    data = json.loads(path.read_text(encoding="utf-8"))
    samples = np.asarray(data["samples_ms"], dtype=float)
    counts = data.get("replicate_counts") or [samples.size]
    return Run([np.asarray(part) for part in np.split(samples, np.cumsum(counts)[:-1])])


MODES = ("threshold-only", "recorded floor", "replicates", "replicates + floor")


def _flags(base: Run, cand: Run, mode: str, noise_floor: RecordedFloor | float) -> bool:
    sys.path.insert(0, str(ROOT))
    from mlperf_track.report.compare import check_regressions, compare_samples, parse_thresholds

    thresholds = parse_thresholds(THRESHOLD)
    floor = noise_floor if mode in ("recorded floor", "replicates + floor") else None
    if mode.startswith("replicates"):
        comparison = compare_samples(
            base.merged, cand.merged, statistics=("p50",), n_resamples=1000, noise_floor=floor,
            baseline_replicates=base.replicates, candidate_replicates=cand.replicates,
        )  # fmt: skip
    else:
        comparison = compare_samples(base.first, cand.first, statistics=("p50",), n_resamples=1000, noise_floor=floor)
    return bool(check_regressions(comparison, thresholds))


@dataclass(frozen=True)
class Score:
    """False alarms and detections of one way of gating."""

    mode: str
    false_alarms: float
    detection: float
    aa_pairs: int
    ab_pairs: int


def score(a_runs: list[Run], b_runs: list[Run], noise_floor: RecordedFloor | float) -> list[Score]:
    """Every mode over all ordered A/A pairs and all (A, B) pairs."""
    scores = []
    for mode in MODES:
        aa = [_flags(x, y, mode, noise_floor) for x, y in itertools.permutations(a_runs, 2)]
        ab = [_flags(x, y, mode, noise_floor) for x, y in itertools.product(a_runs, b_runs)]
        scores.append(Score(mode, sum(aa) / len(aa), sum(ab) / len(ab), len(aa), len(ab)))
    return scores


def _verdict(score: Score) -> str:
    problems = []
    if score.false_alarms > TARGET_FALSE_ALARMS:
        problems.append("too many false alarms")
    if score.detection < TARGET_DETECTION:
        problems.append("misses slowdowns")
    return "; ".join(problems) or "meets both targets"


def _p50s(runs: list[Run]) -> list[float]:
    return [float(np.median(run.first)) for run in runs]


def _floor_line(noise_floor: RecordedFloor | float) -> str:
    sys.path.insert(0, str(ROOT))
    from mlperf_track.report.noise import RecordedFloor, detectable_change

    if isinstance(noise_floor, RecordedFloor):
        p50 = noise_floor.floors["p50"]
        smallest = detectable_change(p50, 0.05, noise_floor.runs)
        return (
            f"- noise floor (p50, sd of log over {noise_floor.runs} calibration runs in separate processes): "
            f"{p50:.2%}; smallest slowdown it calls significant: {smallest:.1%}"
        )
    return f"- noise floor given with --noise-floor (taken as known): {noise_floor:.2%}"


def render(
    scores: list[Score], a_runs: list[Run], b_runs: list[Run], noise_floor: RecordedFloor | float, title: str
) -> str:
    """The result as Markdown."""
    a_p50, b_p50 = _p50s(a_runs), _p50s(b_runs)
    cv = statistics.stdev(a_p50) / statistics.mean(a_p50) if len(a_p50) > 1 else float("nan")
    lines = [
        title,
        f"- A p50 over runs: {min(a_p50):.3f}-{max(a_p50):.3f} ms (CV {cv:.2%}); B: {min(b_p50):.3f}-{max(b_p50):.3f}"
        f" ms; B/A medians {statistics.median(b_p50) / statistics.median(a_p50) - 1:+.1%}",
        _floor_line(noise_floor),
        "",
        f"| gate (`compare --fail-on {THRESHOLD}`) | A/A false alarms | target | detection of the slowdown | target |"
        " verdict |",
        "|---|---|---|---|---|---|",
        *(
            f"| {s.mode} | {s.false_alarms:.1%} ({round(s.false_alarms * s.aa_pairs)}/{s.aa_pairs} pairs) | "
            f"<= {TARGET_FALSE_ALARMS:.0%} | {s.detection:.1%} ({round(s.detection * s.ab_pairs)}/{s.ab_pairs} pairs)"
            f" | >= {TARGET_DETECTION:.0%} | {_verdict(s)} |"
            for s in scores
        ),
    ]
    return "\n".join(lines)


def _calibrate_spin(args: argparse.Namespace, folder: Path) -> float:
    """A's median latency from one long calibration run; the spin adds ``--slowdown`` of it to every call."""
    run = _load(_spawn(args, folder / "calibration.json", 0.0, 1))
    return float(np.median(run.first)) * args.slowdown


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--runs", type=int, default=8, help="runs of A and of B each (default 8)")
    parser.add_argument("--replicates", type=int, default=3, help="replicates per run (default 3)")
    parser.add_argument(
        "--calibration-runs", type=int, default=8, help="extra A runs, each its own process, for the noise floor (>= 8)"
    )
    parser.add_argument("--noise-floor", type=float, default=None, help="use this floor (a fraction) instead")
    parser.add_argument("--floor-output", type=Path, default=None, help="also write the recorded floor (JSON)")
    parser.add_argument("--slowdown", type=float, default=0.10, help="B's injected slowdown (default 0.10)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--min-time", type=float, default=None, help="override the CPU default min_time_s")
    parser.add_argument("--quick", action="store_true", help="3 + 3 runs x 2 short replicates")
    parser.add_argument("--markdown", type=Path, default=None, help="append the table to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--output", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--spin-ms", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.image_size, args.runs, args.replicates = 32, 3, 2
        args.min_time = 0.2 if args.min_time is None else args.min_time
    if args.runs < (2 if args.quick else 8) or args.replicates < 1:
        parser.error("--runs must be >= 8 (>= 2 with --quick, a smoke run) and --replicates >= 1")
    if args.noise_floor is None and args.calibration_runs < 8:
        parser.error(f"--calibration-runs {args.calibration_runs}: at least 8 (fewer underestimate the floor)")
    return args


def _noise_floor(args: argparse.Namespace, calibration: list[Run]) -> RecordedFloor | float:
    """The floor the gate uses: ``--noise-floor``, else recorded from the calibration runs (and saved if asked)."""
    sys.path.insert(0, str(ROOT))
    from mlperf_track.report.noise_floor import record_noise_floor

    if args.noise_floor is not None:
        return float(args.noise_floor)
    floor = record_noise_floor([run.first for run in calibration], description=f"{args.model} calibration runs")
    if args.floor_output:
        args.floor_output.write_text(json.dumps(floor.as_dict(), indent=2), encoding="utf-8")
    return floor


def main(argv: list[str] | None = None) -> int:
    """Spawn the runs, score the gate, print the table (and append it to ``--markdown``)."""
    argv = sys.argv[1:] if argv is None else argv
    args = _parse(argv)
    if args.worker:
        _worker(args)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory(prefix="regression-gate-") as tmp:
        folder = Path(tmp)
        spin_ms = _calibrate_spin(args, folder)
        logger.info("B adds a %.3f ms busy-wait to every call (%.0f%% of A's median)", spin_ms, 100 * args.slowdown)
        calibration: list[Run] = []
        a_runs: list[Run] = []
        b_runs: list[Run] = []
        # interleave calibration, A and B runs so that drift of the machine reaches the floor and both sides alike
        for i in range(max(args.runs, args.calibration_runs)):
            if i < args.calibration_runs:
                calibration.append(_load(_spawn(args, folder / f"cal{i}.json", 0.0, 1)))
            if i < args.runs:
                a_runs.append(_load(_spawn(args, folder / f"a{i}.json", 0.0, args.replicates)))
                b_runs.append(_load(_spawn(args, folder / f"b{i}.json", spin_ms, args.replicates)))
    noise_floor = _noise_floor(args, calibration)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    title = (
        f"## Regression gate, {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}\n\n"
        f"- {args.model} {args.image_size} px batch {args.batch_size}, threads {args.threads or 'torch default'}, "
        f"{args.runs} runs of A and of B x {args.replicates} replicates, {args.calibration_runs} calibration runs, "
        f"B = A + a {100 * args.slowdown:.0f}% "
        f"busy-wait; {os.cpu_count()} logical CPUs, load average after {load:.2f}\n"
        f"- command: `{shlex.join(['python', 'benchmarks/regression_gate.py', *argv])}`"
    )
    text = render(score(a_runs, b_runs, noise_floor), a_runs, b_runs, noise_floor, title)
    print(text)
    if args.markdown:
        with args.markdown.open("a", encoding="utf-8") as handle:
            handle.write("\n" + text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
