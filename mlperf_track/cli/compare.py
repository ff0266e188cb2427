"""``mlperf-track compare``: is the candidate's latency worse than the baseline's, beyond run-to-run noise?

RUN is an MLflow run id (or ``runs:/<id>``), whose ``samples.csv`` artifact holds the raw latencies, or a local
``samples.csv`` or result JSON file. The latencies are compared with a one-sided Mann-Whitney U test and
bootstrap intervals of each statistic's ratio, and the change must also be significant given the between-run
spread: the replicates of runs made with ``--repeats`` (Welch), or a ``--noise-floor`` (a file recorded by
``mlperf-track noise-floor`` from >= 8 separate runs, or a figure). Without either, the verdict says that the
gate is threshold-only. Exit code 1 when a ``--fail-on`` threshold is exceeded by a significant slowdown, 0 otherwise
(2 for bad input), so it can gate CI. A side whose measurement is not valid is flagged.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlperf_track.errors import ConfigError, MissingDependencyError

if TYPE_CHECKING:
    from rich.table import Table

    from mlperf_track.report.compare import Comparison, Threshold

#: Statistics always shown, besides those of the thresholds.
SHOWN_STATISTICS = ("p50", "mean", "p90", "p99")


def register(subparsers: Any) -> None:
    """Add the ``compare`` subcommand."""
    parser = subparsers.add_parser(
        "compare",
        help="compare two runs' latencies; exit 1 on a significant regression",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--baseline", required=True, metavar="RUN", help="run id, runs:/ URI, samples.csv or JSON")
    parser.add_argument("--candidate", required=True, metavar="RUN", help="run id, runs:/ URI, samples.csv or JSON")
    parser.add_argument("--experiment", default=None, help="RUN may also be a run name: looked up in this experiment")
    parser.add_argument(
        "--fail-on",
        default="p50:5%",
        help="thresholds STAT:N%% or STAT:Nms, comma-separated (stats: min p50 p90 p95 p99 max mean)",
    )
    parser.add_argument("--alpha", default="0.05", help="significance level of the Mann-Whitney U test")
    parser.add_argument("--confidence", default="0.95", help="confidence level of the bootstrap intervals")
    parser.add_argument("--resamples", default="2000", help="bootstrap resamples")
    parser.add_argument("--seed", default="0", help="seed of the bootstrap")
    parser.add_argument(
        "--noise-floor",
        default=None,
        metavar="PCT",
        help="between-run spread of one run on this machine: a file from `mlperf-track noise-floor` (>= 8 runs "
        "in separate processes), or a figure such as 2%%; with --repeats replicates on both sides the wider bound "
        "wins; with neither, the gate is threshold-only",
    )
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the comparison as JSON")
    parser.set_defaults(func=run)


def _fraction(parameter: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(parameter, text, "a number in (0, 1)") from None
    if not 0 < value < 1:
        raise ConfigError(parameter, text, "a number in (0, 1)")
    return value


def _integer(parameter: str, text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(parameter, text, f"an integer >= {minimum}") from None
    if value < minimum:
        raise ConfigError(parameter, text, f"an integer >= {minimum}")
    return value


def tracking_uri_for(*refs: str) -> str | None:
    """Configure MLflow only when a reference is not a local file."""
    if all(Path(ref).expanduser().is_file() for ref in refs):
        return None
    from mlperf_track.tracking.setup import configure_tracking

    return configure_tracking(None)


def run(args: argparse.Namespace) -> int:
    """Compare, print the table and the verdict; 1 on a regression."""
    from mlperf_track.report.compare import check_regressions, compare_samples, parse_thresholds
    from mlperf_track.report.noise import parse_noise_floor, run_context
    from mlperf_track.report.samples import load_samples, resolve_ref

    thresholds = parse_thresholds(args.fail_on)
    alpha = _fraction("--alpha", args.alpha)
    confidence = _fraction("--confidence", args.confidence)
    resamples = _integer("--resamples", args.resamples, 100)
    seed = _integer("--seed", args.seed, 0)
    noise_floor = None if args.noise_floor is None else parse_noise_floor(args.noise_floor)
    tracking_uri = tracking_uri_for(args.baseline, args.candidate)
    where = {"tracking_uri": tracking_uri, "experiment": args.experiment}
    refs = {
        "baseline": resolve_ref(args.baseline, parameter="--baseline", **where),
        "candidate": resolve_ref(args.candidate, parameter="--candidate", **where),
    }
    baseline = load_samples(refs["baseline"], tracking_uri=tracking_uri)
    candidate = load_samples(refs["candidate"], tracking_uri=tracking_uri)
    contexts = {side: run_context(ref, tracking_uri=tracking_uri) for side, ref in refs.items()}
    statistics = tuple(dict.fromkeys([*SHOWN_STATISTICS, *(t.statistic for t in thresholds)]))
    comparison = compare_samples(
        baseline.latency_ms,
        candidate.latency_ms,
        statistics=statistics,
        baseline_name=baseline.name,
        candidate_name=candidate.name,
        alpha=alpha,
        confidence=confidence,
        n_resamples=resamples,
        seed=seed,
        baseline_replicates=contexts["baseline"].replicates,
        candidate_replicates=contexts["candidate"].replicates,
        noise_floor=noise_floor,
    )
    failures = check_regressions(comparison, thresholds)
    invalid = {
        side: context.invalid_reasons or ("not valid",) for side, context in contexts.items() if context.valid is False
    }
    _print(comparison, thresholds, failures, invalid)
    if args.json:
        data = {
            **comparison.as_dict(),
            "thresholds": [t.text for t in thresholds],
            "regressions": failures,
            "invalid": {side: list(reasons) for side, reasons in invalid.items()},
        }
        Path(args.json).write_text(json.dumps(data, indent=2), encoding="utf-8")
    return 1 if failures else 0


def _print(
    comparison: Comparison, thresholds: tuple[Threshold, ...], failures: list[str], invalid: dict[str, tuple[str, ...]]
) -> None:
    try:
        from rich.console import Console
    except ImportError:
        raise MissingDependencyError("rich", "report", "the compare table") from None
    from mlperf_track.report.compare import masked_by_noise
    from mlperf_track.report.noise import NONE, detectable_change

    console = Console()
    console.print(render_table(comparison, thresholds))
    console.print(
        f"Mann-Whitney U (one-sided): p={comparison.p_slower:.3g} that the candidate is slower, "
        f"p={comparison.p_faster:.3g} that it is faster (alpha {comparison.alpha:g})"
    )
    noise = comparison.noise
    if noise.source == NONE:
        console.print(f"[yellow]between-run noise: {noise.detail}[/yellow]")
    elif noise.floor is not None:
        smallest = detectable_change(noise.floor, comparison.alpha, noise.runs)
        console.print(f"between-run noise: {noise.detail}; smallest detectable slowdown {smallest:.1%} (p50)")
    else:
        console.print(f"between-run noise: {noise.detail}")
    for side, reasons in invalid.items():
        console.print(f"[yellow]the {side} measurement is not valid: {'; '.join(reasons)}[/yellow]")
    for message in failures:
        console.print(f"[bold red]REGRESSION[/bold red] {message}")
    for threshold in thresholds:
        masked = masked_by_noise(comparison, threshold)
        if masked:
            console.print(f"[yellow]within noise[/yellow] {masked}")
    if not failures:
        console.print(f"[green]no significant regression beyond {', '.join(t.text for t in thresholds)}[/green]")


def render_table(comparison: Comparison, thresholds: tuple[Threshold, ...]) -> Table:
    """One row per statistic: both values, the change, its bootstrap interval, the threshold and a verdict."""
    from rich.table import Table

    from mlperf_track.report.compare import check_regression

    limits = {t.statistic: t for t in thresholds}
    table = Table(
        title=f"{comparison.candidate} (n={comparison.n_candidate}) vs "
        f"{comparison.baseline} (n={comparison.n_baseline}), latencies in ms"
    )
    for header in ("stat", "baseline", "candidate", "change", f"{comparison.confidence:.0%} CI", "limit", "verdict"):
        table.add_column(header, justify="left" if header in ("stat", "verdict") else "right", no_wrap=True)
    for name, change in comparison.changes.items():
        threshold = limits.get(name)
        if threshold is not None and check_regression(comparison, threshold):
            verdict = "[bold red]REGRESSION[/bold red]"
        elif comparison.slower_within_runs(name) and not comparison.significantly_slower(name):
            verdict = "[yellow]within noise[/yellow]"
        elif comparison.significantly_slower(name):
            verdict = "[yellow]slower[/yellow]"
        elif comparison.significantly_faster(name):
            verdict = "[green]faster[/green]"
        else:
            verdict = "same"
        ci = f"{100 * (change.ci_low - 1):+.1f}..{100 * (change.ci_high - 1):+.1f}%"
        table.add_row(
            name,
            f"{change.baseline_ms:.4g}",
            f"{change.candidate_ms:.4g}",
            f"{change.change_pct:+.1f}%",
            ci,
            threshold.text if threshold else "",
            verdict,
        )
    return table
