"""Does ``compare --fail-on p50:3%`` gate CI honestly? A/A false alarms and detection of a real 10% slowdown.

Fresh worker processes measure one configuration (default resnet18, 64 px, batch 1, the CPU timing users
get), alternating A (the model) and B (the same model, same weights, with a real slowdown: a busy-wait after
every forward calibrated to ``--slowdown`` of A's median latency, so every call does proportionally more
work; nothing is scaled after the fact). Every run records ``--replicates`` back-to-back replicates.

From the same runs, the gate is scored three ways over all ordered pairs:

* ``plain``: one replicate per run, no between-run noise known (the compare of round one);
* ``noise floor``: one replicate per run, ``--noise-floor`` = the between-run CV of p50 measured on separate
  calibration runs (or the value given with ``--noise-floor``);
* ``replicates``: every replicate of both runs (what ``--repeats N`` records), Welch on the replicates.

A/A false-alarm rate: ordered pairs of A runs that the gate calls a regression (target <= 5%). Detection rate:
(A, B) pairs it calls a regression (target >= 95%). Usage::

    python benchmarks/regression_gate.py                   # 8 + 8 runs x 3 replicates (~4 min; quiet machine)
    python benchmarks/regression_gate.py --quick           # small smoke run (< 1.5 min)
    python benchmarks/regression_gate.py --markdown benchmarks/RESULTS.md
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

import numpy as np

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


def _flags(base: Run, cand: Run, mode: str, noise_floor: float) -> bool:
    sys.path.insert(0, str(ROOT))
    from mlperf_track.report.compare import check_regressions, compare_samples, parse_thresholds

    thresholds = parse_thresholds(THRESHOLD)
    if mode == "replicates":
        comparison = compare_samples(
            base.merged, cand.merged, statistics=("p50",), n_resamples=1000,
            baseline_replicates=base.replicates, candidate_replicates=cand.replicates,
        )  # fmt: skip
    else:
        floor = noise_floor if mode == "noise floor" else None
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


def score(a_runs: list[Run], b_runs: list[Run], noise_floor: float) -> list[Score]:
    """Every mode over all ordered A/A pairs and all (A, B) pairs."""
    scores = []
    for mode in ("plain", "noise floor", "replicates"):
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


def render(scores: list[Score], a_runs: list[Run], b_runs: list[Run], noise_floor: float, title: str) -> str:
    """The result as Markdown."""
    a_p50, b_p50 = _p50s(a_runs), _p50s(b_runs)
    cv = statistics.stdev(a_p50) / statistics.mean(a_p50) if len(a_p50) > 1 else float("nan")
    lines = [
        title,
        f"- A p50 over runs: {min(a_p50):.3f}-{max(a_p50):.3f} ms (CV {cv:.2%}); B: {min(b_p50):.3f}-{max(b_p50):.3f}"
        f" ms; B/A medians {statistics.median(b_p50) / statistics.median(a_p50) - 1:+.1%}",
        f"- noise floor used by the `noise floor` mode: {noise_floor:.2%}",
        "",
        f"| gate (`compare --fail-on {THRESHOLD}`) | A/A false alarms | target | detection of the slowdown | target |"
        " verdict |",
        "|---|---|---|---|---|---|",
        *(
            f"| {s.mode} | {s.false_alarms:.0%} ({s.aa_pairs} pairs) | <= {TARGET_FALSE_ALARMS:.0%} | "
            f"{s.detection:.0%} ({s.ab_pairs} pairs) | >= {TARGET_DETECTION:.0%} | {_verdict(s)} |"
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
    parser.add_argument("--calibration-runs", type=int, default=4, help="extra A runs for the noise floor")
    parser.add_argument("--noise-floor", type=float, default=None, help="use this floor (a fraction) instead")
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
        args.image_size, args.runs, args.replicates, args.calibration_runs = 32, 3, 2, 2
        args.min_time = 0.2 if args.min_time is None else args.min_time
    return args


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
        calibration = [_load(_spawn(args, folder / f"cal{i}.json", 0.0, 1)) for i in range(args.calibration_runs)]
        a_runs, b_runs = [], []
        for i in range(args.runs):  # alternate A and B so drift hits both alike
            a_runs.append(_load(_spawn(args, folder / f"a{i}.json", 0.0, args.replicates)))
            b_runs.append(_load(_spawn(args, folder / f"b{i}.json", spin_ms, args.replicates)))
    cal_p50 = _p50s(calibration)
    measured_floor = statistics.stdev(cal_p50) / statistics.mean(cal_p50) if len(cal_p50) > 1 else 0.0
    noise_floor = args.noise_floor if args.noise_floor is not None else measured_floor
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    title = (
        f"## Regression gate, {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}\n\n"
        f"- {args.model} {args.image_size} px batch {args.batch_size}, threads {args.threads or 'torch default'}, "
        f"{args.runs} runs of A and of B x {args.replicates} replicates, B = A + a {100 * args.slowdown:.0f}% "
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
