"""``mlperf-track noise-floor``: record how far runs of one configuration spread, for ``compare --noise-floor``.

Give it at least 8 runs of the same configuration, each made in its own process (eight ``mlperf-track bench``
invocations, say), as run ids, ``runs:/`` URIs, ``samples.csv`` files or result JSON files. It writes the
between-run spread of every statistic (the sd of its log over the runs) to ``--output``, which
``mlperf-track compare --noise-floor FILE`` then uses to decide whether a slowdown is beyond run-to-run noise.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mlperf_track.errors import ConfigError


def register(subparsers: Any) -> None:
    """Add the ``noise-floor`` subcommand."""
    parser = subparsers.add_parser(
        "noise-floor",
        help="record the between-run spread of >= 8 runs of one configuration (for compare --noise-floor)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run id, runs:/ URI, samples.csv or result JSON")
    parser.add_argument("--output", required=True, metavar="PATH", help="where to write the floor (JSON)")
    parser.add_argument("--experiment", default=None, help="RUN may also be a run name: looked up in this experiment")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the runs, record the floor, write it and print its p50 figure."""
    from mlperf_track.cli.compare import tracking_uri_for
    from mlperf_track.report.noise_floor import record_noise_floor
    from mlperf_track.report.samples import load_samples

    output = Path(args.output)
    if output.suffix.lower() != ".json":
        raise ConfigError("--output", args.output, "a .json path")
    tracking_uri = tracking_uri_for(*args.runs)
    samples = [
        load_samples(ref, tracking_uri=tracking_uri, experiment=args.experiment, parameter="RUN") for ref in args.runs
    ]
    floor = record_noise_floor(
        [sample.latency_ms for sample in samples], description=_describe([sample.name for sample in samples])
    )
    output.write_text(json.dumps(floor.as_dict(), indent=2), encoding="utf-8")
    from rich.console import Console

    Console().print(
        f"noise floor over {floor.runs} runs: p50 {floor.floors['p50']:.2%}, p99 {floor.floors['p99']:.2%} -> {output}"
    )
    return 0


def _describe(names: list[str]) -> str:
    """The measured cases, once each: a ``.../<case>/samples.csv`` path names its case folder."""
    cases = list(dict.fromkeys(Path(name).parent.name if name.endswith("samples.csv") else name for name in names))
    shown = ", ".join(cases[:3])
    return shown if len(cases) <= 3 else f"{shown} and {len(cases) - 3} more"
