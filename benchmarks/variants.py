"""Every variant side by side on the CPU: size, parameters, FLOPs, digits accuracy with its interval, speed.

For each model (resnet18 and resnet50 by default) the baseline is trained on ``digits`` until its holdout
top-1 stops improving (``--epochs auto``, cached), every variant that this CPU runs is built from it (those
that retrain use the same holdout early stopping within their budget), prepared by the runtime it is
pinned to (else ``eager``) through the runtimes registry, evaluated on the evaluation split against the
baseline (top-1 delta with its paired 95% interval and the verdict), and timed with the engine's
``measure_callable`` on synthetic batches. Model facts come from ``engine.facts.model_facts``. Random
initial weights: nothing is downloaded. Targets, printed under the table: every baseline reaches a top-1 of
0.97, and no variant shows a significant gain over its baseline. Usage::

    python benchmarks/variants.py                          # full run (tens of minutes on 2 cores; quiet machine)
    python benchmarks/variants.py --quick                  # smoke run: resnet18 at 32 px, small training subset
    python benchmarks/variants.py --markdown benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import logging
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Subset

try:
    import mlperf_track  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`: use the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlperf_track import metrics as m
from mlperf_track.data.base import DatasetSplits
from mlperf_track.engine.accuracy import AccuracyReport, evaluate_accuracy
from mlperf_track.engine.environment import environment_tags
from mlperf_track.engine.facts import model_facts
from mlperf_track.engine.measure import measure_callable
from mlperf_track.models.artifact import ModelArtifact
from mlperf_track.runtimes.base import PrepareRequest
from mlperf_track.spec import TimingConfig
from mlperf_track.training.early_stopping import StoppingRule
from mlperf_track.variants.base import VariantContext

logger = logging.getLogger("benchmarks.variants")

#: The targets printed under the table.
TARGET_TOP1 = 0.97


@dataclass(frozen=True)
class Settings:
    """What one invocation measures."""

    models: tuple[str, ...]
    image_size: int
    epochs: int | None
    rule: StoppingRule | None
    batch_size: int
    variants: tuple[str, ...]
    train_samples: int | None
    timing: TimingConfig
    cache_dir: Path
    num_threads: int | None
    options: tuple[tuple[str, str], ...] = ()
    train_precision: str = "auto"


@dataclass
class Row:
    """One measured variant."""

    model: str
    variant: str
    runtime: str
    precision: str
    build_s: float
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    prepare_s: float | None = None
    error: str | None = None


def _epochs(text: str) -> int | None:
    if text.strip().lower() == "auto":
        return None
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"--epochs must be auto or an integer >= 0, got {text}")
    return value


def _settings(args: argparse.Namespace) -> Settings:
    from mlperf_track.pipeline.config import default_cache_dir

    if args.quick:
        return Settings(
            models=("resnet18",),
            image_size=32,
            epochs=None,
            rule=StoppingRule(patience=1, max_epochs=3, max_seconds=60.0),
            batch_size=8,
            variants=tuple(args.variants.split(",")),
            train_samples=256,
            timing=TimingConfig(warmup_iters=2, warmup_s=0.05, min_iters=5, max_iters=50, max_time_s=0.5),
            cache_dir=Path(args.cache_dir or default_cache_dir()),
            num_threads=args.num_threads,
            options=(("fine_tune_epochs", "1"), ("distill_epochs", "1")),
            train_precision=args.train_precision,
        )
    return Settings(
        models=tuple(args.models.split(",")),
        image_size=args.image_size,
        epochs=args.epochs,
        rule=_rule(args),
        batch_size=args.batch_size,
        variants=tuple(args.variants.split(",")),
        train_samples=args.train_samples,
        timing=TimingConfig(warmup_iters=5, warmup_s=0.5, min_iters=20, max_time_s=5.0, target_rel_ci=0.02),
        cache_dir=Path(args.cache_dir or default_cache_dir()),
        num_threads=args.num_threads,
        train_precision=args.train_precision,
    )


def _rule(args: argparse.Namespace) -> StoppingRule | None:
    """The baseline's stopping rule from the flags, or ``None`` for the library's default."""
    if args.patience is None and args.max_epochs is None and args.max_train_s is None:
        return None
    from mlperf_track.variants.baseline import DEFAULT_STOPPING

    return dataclasses.replace(
        DEFAULT_STOPPING,
        patience=args.patience or DEFAULT_STOPPING.patience,
        max_epochs=args.max_epochs or DEFAULT_STOPPING.max_epochs,
        max_seconds=DEFAULT_STOPPING.max_seconds if args.max_train_s is None else (args.max_train_s or None),
    )


def _data(settings: Settings) -> DatasetSplits:
    from mlperf_track.data.registry import load_dataset

    data = load_dataset("digits", image_size=settings.image_size, seed=0)
    if settings.train_samples is not None and data.train is not None:
        count = min(settings.train_samples, len(data.train))  # type: ignore[arg-type]
        data = dataclasses.replace(data, name=f"digits[:{count}]", train=Subset(data.train, range(count)))
    return data


def _measure(
    model: str,
    variant: str,
    artifact: ModelArtifact,
    *,
    build_s: float,
    data: DatasetSplits,
    settings: Settings,
    reference: AccuracyReport | None,
) -> tuple[Row, AccuracyReport | None]:
    from mlperf_track.runtimes.registry import get_runtime

    runtime_name = artifact.runtime or "eager"
    precision = artifact.precision or "fp32"
    row = Row(model, variant, runtime_name, precision, build_s)
    example = torch.randn(1, *artifact.input_shape)
    if artifact.module is not None and precision in ("fp16", "bf16"):
        example = example.to(next(artifact.module.parameters()).dtype)
    facts, _notes = model_facts(artifact.module, example, artifact.onnx_path)
    row.metrics.update(facts)
    request = PrepareRequest(
        device="cpu",
        precision=precision,
        batch_sizes=(settings.batch_size,),
        input_shape=artifact.input_shape,
        num_threads=settings.num_threads,
    )
    report = None
    try:
        start = time.perf_counter()
        prepared = get_runtime(runtime_name).prepare(artifact, request)
        row.prepare_s = time.perf_counter() - start
    except Exception as error:  # report the failure in the table and go on with the next variant
        row.error = f"prepare: {type(error).__name__}: {error}"
        return row, None
    try:
        if data.val is not None:
            report = evaluate_accuracy(prepared.predict, data.val, batch_size=64, reference=reference)
            row.metrics.update(report.metrics())
            row.tags.update(report.tags())
        inputs = prepared.make_input(settings.batch_size)
        measurement = measure_callable(
            lambda: prepared(inputs), device="cpu", batch_size=settings.batch_size, timing=settings.timing
        )
        row.metrics.update({key: measurement.metrics[key] for key in (m.LATENCY_P50, m.THROUGHPUT)})
    except Exception as error:
        row.error = f"measure: {type(error).__name__}: {error}"
    finally:
        prepared.close()
    return row, report


def run_model(model: str, settings: Settings) -> list[Row]:
    """Baseline and every variant of ``model``."""
    from mlperf_track.models.registry import load_model
    from mlperf_track.variants.baseline import prepare_baseline
    from mlperf_track.variants.common import resolve_train_precision
    from mlperf_track.variants.registry import resolve_variants

    data = _data(settings)
    train_precision = resolve_train_precision(settings.train_precision, "cpu")
    start = time.perf_counter()
    prepared = prepare_baseline(
        load_model(model),
        data,
        image_size=settings.image_size,
        epochs=settings.epochs,
        device="cpu",
        seed=0,
        cache_dir=settings.cache_dir,
        rule=settings.rule,
        train_precision=train_precision,
    )
    facts = {key: value for key, value in prepared.facts.items() if key != m.BASELINE_CURVE_FACT}
    logger.info("%s baseline ready in %.1f s: %s", model, time.perf_counter() - start, facts)
    baseline_row, reference = _measure(
        model,
        "baseline",
        prepared.artifact,
        build_s=float(prepared.facts.get("baseline.train_s", 0.0)),
        data=data,
        settings=settings,
        reference=None,
    )
    baseline_row.tags.update(facts)
    rows = [baseline_row]
    work = Path(tempfile.mkdtemp(prefix="mlperf_track-variants-"))
    for variant in resolve_variants(settings.variants, "cpu"):
        context = VariantContext(
            device="cpu",
            data=data,
            image_size=settings.image_size,
            seed=0,
            epochs=settings.epochs,
            options=dict(settings.options),
            work_dir=work / variant.name,
            train_precision=train_precision,
        )
        start = time.perf_counter()
        try:
            artifact = variant.build(prepared.artifact, context)
        except Exception as error:  # a recipe that fails is a row with its error, not the end of the run
            rows.append(Row(model, variant.name, "-", "-", time.perf_counter() - start, error=f"build: {error}"))
            continue
        build_s = time.perf_counter() - start
        logger.info("%s/%s built in %.1f s", model, variant.name, build_s)
        row = _measure(
            model, variant.name, artifact, build_s=build_s, data=data, settings=settings, reference=reference
        )
        row[0].tags.update({key: value for key, value in artifact.tags.items() if key.startswith("variant.train")})
        rows.append(row[0])
    return rows


def _cell(row: Row, key: str, scale: float = 1.0, digits: int = 2) -> str:
    value = row.metrics.get(key)
    return "-" if value is None else f"{value * scale:.{digits}f}"


def _delta_cell(row: Row) -> str:
    """``-1.4 [-3.0, +0.3]`` in points, or ``-``."""
    delta = row.metrics.get(m.ACCURACY_TOP1_DELTA)
    if delta is None:
        return "-"
    low, high = row.metrics.get(m.ACCURACY_TOP1_DELTA_CI_LOW), row.metrics.get(m.ACCURACY_TOP1_DELTA_CI_HIGH)
    interval = f" [{low * 100:+.1f}, {high * 100:+.1f}]" if low is not None and high is not None else ""
    return f"{delta * 100:+.1f}{interval}"


def _training_cell(row: Row) -> str:
    """The training a row's model had: the baseline's epochs and stop reason, or the variant's budget."""
    if row.variant == "baseline":
        if row.tags.get("baseline.trained") != "true":
            return "none"
        return f"{row.tags.get('baseline.epochs_run', '?')} ep, {row.tags.get('baseline.stop_reason', '?')}"
    epochs = row.tags.get("variant.train_epochs")
    return "-" if epochs is None else f"{epochs} ep, {float(row.tags.get('variant.train_s', 0)):.0f} s"


HEADERS = (
    "model",
    "variant",
    "runtime",
    "precision",
    "size MB",
    "params M",
    "GFLOPs",
    "sparsity",
    "top-1",
    "Δ top-1 pts [95% CI]",
    "verdict",
    "agree",
    "trained",
    "p50 ms",
    "samples/s",
    "build s",
    "prepare s",
)


def _cells(row: Row) -> list[str]:
    return [
        row.model,
        row.variant,
        row.runtime,
        row.precision,
        _cell(row, m.MODEL_SIZE),
        _cell(row, m.MODEL_PARAMS, 1e-6),
        _cell(row, m.MODEL_FLOPS, 1e-9, 3),
        _cell(row, m.MODEL_SPARSITY),
        _cell(row, m.ACCURACY_TOP1, digits=3),
        _delta_cell(row),
        row.tags.get(m.ACCURACY_VERDICT_TAG, "-"),
        _cell(row, m.ACCURACY_AGREEMENT, digits=3),
        _training_cell(row),
        _cell(row, m.LATENCY_P50),
        _cell(row, m.THROUGHPUT, digits=1),
        f"{row.build_s:.1f}",
        "-" if row.prepare_s is None else f"{row.prepare_s:.1f}",
    ]


def render(rows: list[Row], settings: Settings) -> None:
    """Print the table with rich, and any errors below it."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Variants on CPU, digits at {settings.image_size} px, batch {settings.batch_size}")
    for header in HEADERS:
        table.add_column(header, justify="left" if header in HEADERS[:4] else "right")
    for row in rows:
        table.add_row(*_cells(row))
    console = Console(width=None if sys.stdout.isatty() else 240)  # a log file gets the whole table
    console.print(table)
    for row in rows:
        if row.error:
            console.print(f"[red]{row.model}/{row.variant}[/red]: {row.error}")
    for line in target_lines(rows):
        console.print(line)


def target_lines(rows: list[Row]) -> list[str]:
    """One line per target: every baseline's top-1 >= 0.97; no variant with a significant gain."""
    lines = []
    for row in rows:
        if row.variant != "baseline":
            continue
        top1 = row.metrics.get(m.ACCURACY_TOP1)
        met = top1 is not None and top1 >= TARGET_TOP1
        shown = "not measured" if top1 is None else f"{top1:.3f}"
        converged = row.tags.get("baseline.converged", "n/a")
        lines.append(
            f"target {row.model} baseline top-1 >= {TARGET_TOP1}: {'MET' if met else 'NOT MET'} ({shown}; "
            f"converged {converged}, {row.tags.get('baseline.epochs_run', '?')} epochs, "
            f"{row.tags.get('baseline.train_s', '?')} s)"
        )
    gains = [f"{row.model}/{row.variant}" for row in rows if row.tags.get(m.ACCURACY_VERDICT_TAG) == m.VERDICT_GAIN]
    verdicts = sum(1 for row in rows if m.ACCURACY_VERDICT_TAG in row.tags)
    lines.append(
        f"target no variant with a significant gain: {'NOT MET' if gains else 'MET'} "
        f"({', '.join(gains) if gains else f'0 of {verdicts} with a verdict'})"
    )
    return lines


def markdown(rows: list[Row], settings: Settings) -> str:
    """The table as a Markdown section with the machine, date and command."""
    tags = environment_tags()
    lines = [
        f"## Variants ({dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')})",
        "",
        f"- machine: {tags.get('hw.cpu', '?')}, {tags.get('hw.cpu_cores', '?')} cores; torch {torch.__version__}",
        f"- command: `{shlex.join(['python', *sys.argv])}`",
        f"- digits at {settings.image_size} px, batch {settings.batch_size}, baseline epochs "
        + ("auto (until the holdout top-1 stops improving)" if settings.epochs is None else str(settings.epochs))
        + (f", training subset {settings.train_samples}" if settings.train_samples else ""),
        "- latency p50 per batch and throughput from `engine.measure_callable`; accuracy on the evaluation split;"
        " Δ top-1 in points with its paired 95% interval (exact McNemar ∪ Bonett-Price) and the verdict;"
        " unstructured pruning stores zeros densely (no speed-up expected)",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "---|" * len(HEADERS),
    ]
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in rows]
    lines += [f"- error in {row.model}/{row.variant}: {row.error}" for row in rows if row.error]
    lines += [""] + [f"- {line}" for line in target_lines(rows)]
    return "\n".join(lines) + "\n\n"


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run, print, optionally append Markdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,resnet50")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument(
        "--epochs", type=_epochs, default=None, help="baseline training: auto (until converged, default) or N epochs"
    )
    parser.add_argument("--patience", type=int, default=None, help="baseline early-stopping patience (epochs)")
    parser.add_argument("--max-epochs", type=int, default=None, help="baseline epoch cap under auto")
    parser.add_argument("--max-train-s", type=float, default=None, help="baseline time cap in s under auto (0: none)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--variants", default="all")
    parser.add_argument("--train-samples", type=int, default=None, help="use only this many training images")
    parser.add_argument("--num-threads", type=int, default=None)
    parser.add_argument(
        "--train-precision", default="auto", choices=("auto", "fp32", "bf16"), help="training precision (as run's)"
    )
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument(
        "--quick", action="store_true", help="resnet18 at 32 px, 256 training images, at most 3 epochs, short timing"
    )
    parser.add_argument("--markdown", type=Path, default=None, help="append the table to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    settings = _settings(args)
    if settings.num_threads is not None:
        torch.set_num_threads(settings.num_threads)
    rows: list[Row] = []
    for model in settings.models:
        rows += run_model(model, settings)
    render(rows, settings)
    if args.markdown is not None:
        with args.markdown.open("a", encoding="utf-8") as handle:
            handle.write(markdown(rows, settings))
        logger.info("appended the table to %s", args.markdown)
    return 1 if any(row.error for row in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
