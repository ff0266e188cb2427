"""Transformers on the CPU: encoder int8 and compile speed-ups, decoder TTFT/TPOT, perplexity, engine fidelity.

Sections (each prints a table; nothing is downloaded, models are the in-code ``hf-config:`` ones):

- ``encoder``: BERT-base-like at sequence 128, batch 8: fp32 eager, dynamic int8 (eager) and ``torch.compile``,
  with the speed-ups over fp32 eager and the accuracy on ``stdlib-docstrings`` with the paired delta interval
  (the baseline is trained there first, cached: a few minutes once).
- ``decoder``: GPT-2-small-like, prompt 128, 64 new tokens, batch 1 and 8: the dynamic-cache ``generate`` path
  (eager) against the static-cache decode compiled by ``torch.compile``: TTFT, TPOT p50/p99, tokens/s,
  speed-up and compile time (``startup/prepare_s``).
- ``quality``: the tiny decoder trained on ``pydoc-topics`` (cached) and every text variant: perplexity, its
  delta with the paired interval, next-token agreement.
- ``fidelity``: TTFT and TPOT measured by the engine against a hand-written loop over ``model.forward`` with
  the same ``DynamicCache`` in the same process, interleaved round by round (target: within 3%).

Usage::

    python benchmarks/transformers.py all                 # the full run (about an hour on 2 quiet cores)
    python benchmarks/transformers.py all --smoke         # tiny models and short windows: checks the script
    python benchmarks/transformers.py decoder --model hf-config:llama-small
"""

from __future__ import annotations

import argparse
import itertools
import logging
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

# Run as a script, this file's folder comes first on sys.path and its name would shadow the transformers package.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

try:
    import mlperf_track  # noqa: F401
except ImportError:  # running from a checkout without `pip install -e .`: use the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlperf_track import metrics as m  # noqa: E402 - after the sys.path fix above
from mlperf_track.engine.result import BenchmarkResult  # noqa: E402 - after the sys.path fix above
from mlperf_track.pipeline.config import PipelineConfig, default_cache_dir  # noqa: E402 - after the sys.path fix above
from mlperf_track.pipeline.runner import run_pipeline  # noqa: E402 - after the sys.path fix above
from mlperf_track.spec import TimingConfig  # noqa: E402 - after the sys.path fix above

logger = logging.getLogger("benchmarks.transformers")

TIMING = TimingConfig(warmup_iters=3, warmup_s=0.5, min_iters=10, min_time_s=2.0, max_time_s=30.0, target_rel_ci=0.02)
SMOKE_TIMING = TimingConfig(warmup_iters=1, warmup_s=0.0, min_iters=3, max_time_s=0.5, target_rel_ci=0.5)
SMOKE_TRAIN = (("train_max_steps", "6"), ("train_eval_every", "3"))


def _cell(value: float | None, fmt: str = "{:.3f}") -> str:
    return "-" if value is None else fmt.format(value)


def _table(title: str, header: Sequence[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(item)) for item in column) for column in zip(header, *rows, strict=True)]
    print(f"\n## {title}\n")
    print("| " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |")


def _run(args: argparse.Namespace, **fields: Any) -> list[BenchmarkResult]:
    timing = fields.pop("timing", SMOKE_TIMING if args.smoke else TIMING)
    config = PipelineConfig(
        device="cpu",
        timing=timing,
        cache_dir=args.cache_dir,
        output_dir=args.output_dir,
        num_threads=args.threads,
        **fields,
    )
    if args.smoke:
        config = replace(config, options=(*config.options, *SMOKE_TRAIN))
    outcome = run_pipeline(config)
    for failure in outcome.failures:
        print(f"FAILED {failure.case.name}: {type(failure.error).__name__}: {failure.error}")
    return outcome.results


def encoder(args: argparse.Namespace) -> None:
    """Dynamic int8 and compile against fp32 eager, with accuracy."""
    model = args.model or ("hf-config:bert-tiny" if args.smoke else "hf-config:bert-base")
    seq_len, batch = (32, 2) if args.smoke else (128, 8)
    results = _run(
        args,
        model=model,
        dataset="auto",
        variants=("quantized_int8_dynamic",),
        runtimes=("eager", "compile"),
        seq_lens=(seq_len,),
        batch_sizes=(batch,),
    )
    base = next((r for r in results if r.case.variant == "baseline" and r.case.runtime == "eager"), None)
    rows = []
    for result in results:
        metrics = result.metrics
        speedup = base.metrics[m.LATENCY_P50] / metrics[m.LATENCY_P50] if base else None
        interval = (metrics.get(m.ACCURACY_TOP1_DELTA_CI_LOW), metrics.get(m.ACCURACY_TOP1_DELTA_CI_HIGH))
        rows.append(
            [
                f"{result.case.variant}/{result.case.runtime}/{result.case.precision}",
                _cell(metrics.get(m.LATENCY_P50), "{:.2f}"),
                _cell(metrics.get(m.THROUGHPUT), "{:.1f}"),
                _cell(metrics.get(m.TOKENS_PER_S), "{:.0f}"),
                _cell(speedup, "{:.2f}x"),
                _cell(metrics.get(m.ACCURACY_TOP1)),
                _cell(metrics.get(m.ACCURACY_TOP1_DELTA), "{:+.3f}"),
                "-" if None in interval else f"[{interval[0]:+.3f}, {interval[1]:+.3f}]",
                _cell(metrics.get(m.STARTUP_PREPARE), "{:.1f}"),
                "valid" if result.valid else "INVALID",
            ]
        )
    header = ["case", "p50 ms", "seq/s", "tokens/s", "vs fp32 eager", "top-1", "Δ top-1", "Δ 95% CI", "prepare s", ""]
    _table(f"{model}, sequence {seq_len}, batch {batch} (target: dynamic int8 >= 1.5x)", header, rows)


def decoder(args: argparse.Namespace) -> None:
    """Dynamic-cache generate (eager) against the static-cache compiled decode."""
    model = args.model or ("hf-config:gpt2-tiny" if args.smoke else "hf-config:gpt2-small")
    prompt, output = (16, 8) if args.smoke else (128, 64)
    results = _run(
        args,
        model=model,
        dataset="synthetic",
        runtimes=("eager", "compile"),
        prompt_lens=(prompt,),
        output_lens=(output,),
        batch_sizes=(1, 8),
    )
    dynamic = {r.case.batch_size: r for r in results if r.case.runtime == "eager"}
    rows = []
    for result in sorted(results, key=lambda r: (r.case.batch_size, r.case.runtime)):
        metrics = result.metrics
        other = dynamic.get(result.case.batch_size)
        speedup = other.metrics[m.TPOT_P50] / metrics[m.TPOT_P50] if other and m.TPOT_P50 in metrics else None
        rows.append(
            [
                f"{result.case.runtime} ({result.tags.get('runtime.kv_cache', '?').split(' ')[0]})",
                str(result.case.batch_size),
                _cell(metrics.get(m.TTFT_P50), "{:.2f}"),
                _cell(metrics.get(m.TPOT_P50), "{:.2f}"),
                _cell(metrics.get(m.TPOT_P99), "{:.2f}"),
                _cell(metrics.get(m.TOKENS_PER_S), "{:.1f}"),
                _cell(speedup, "{:.2f}x"),
                _cell(metrics.get(m.KV_CACHE), "{:.3g}"),
                _cell(metrics.get(m.STARTUP_PREPARE), "{:.1f}"),
                result.tags.get("runtime.inductor_cache", "-"),
                "valid" if result.valid else "INVALID",
            ]
        )
    header = ["runtime (KV cache)", "batch", "TTFT ms", "TPOT p50", "TPOT p99", "tokens/s", "TPOT speed-up", "KV MB",
              "prepare s", "inductor cache", ""]  # fmt: skip
    _table(f"{model}, prompt {prompt}, {output} new tokens", header, rows)


def quality(args: argparse.Namespace) -> None:
    """Perplexity of the trained tiny decoder and of every text variant."""
    model = args.model or "hf-config:gpt2-tiny"
    results = _run(
        args,
        model=model,
        dataset="auto",
        variants=("quantized", "distilled"),
        runtimes=("eager", "compile"),
        prompt_lens=(16,),
        output_lens=(4,),
        batch_sizes=(1,),
        timing=SMOKE_TIMING,  # speed is not the point here
    )
    rows, seen = [], set()
    for result in results:
        key = (result.case.variant, result.case.precision)
        if key in seen:
            continue
        seen.add(key)
        metrics = result.metrics
        low, high = metrics.get(m.ACCURACY_PERPLEXITY_DELTA_CI_LOW), metrics.get(m.ACCURACY_PERPLEXITY_DELTA_CI_HIGH)
        rows.append(
            [
                f"{result.case.variant}/{result.case.precision}",
                _cell(metrics.get(m.ACCURACY_PERPLEXITY), "{:.2f}"),
                _cell(metrics.get(m.ACCURACY_PERPLEXITY_DELTA), "{:+.3f}"),
                "-" if low is None or high is None else f"[{low:+.3f}, {high:+.3f}]",
                _cell(metrics.get(m.ACCURACY_NEXT_TOKEN_AGREEMENT), "{:.4f}"),
                _cell(metrics.get(m.ACCURACY_NEXT_TOKEN_TOP1), "{:.4f}"),
                result.tags.get("baseline.stop_reason", result.tags.get("artifact.baseline.stop_reason", "-")),
            ]
        )
    header = ["variant", "perplexity", "Δ perplexity", "Δ 95% CI", "next-token agreement", "next-token top-1"]
    header.append("training")
    _table(f"{model} trained on pydoc-topics: quality of every variant", header, rows)


def _hand_loop(model: Any, prompt: Any, output_len: int) -> tuple[float, list[float]]:
    """TTFT and the token gaps (ms) of one greedy generation over ``model.forward`` with a ``DynamicCache``."""
    import torch
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    with torch.inference_mode():
        start = time.perf_counter_ns()
        logits = model(input_ids=prompt, cache=cache, use_cache=True, return_dict=False)[0]
        token = logits[:, -1].argmax(-1, keepdim=True)
        marks = [time.perf_counter_ns()]
        for _ in range(output_len - 1):
            logits = model(input_ids=token, cache=cache, use_cache=True, return_dict=False)[0]
            token = logits[:, -1].argmax(-1, keepdim=True)
            marks.append(time.perf_counter_ns())
    gaps = [(b - a) / 1e6 for a, b in itertools.pairwise(marks)]
    return (marks[0] - start) / 1e6, gaps


def fidelity(args: argparse.Namespace) -> None:
    """Engine TTFT/TPOT against a hand loop over ``model.forward`` with the same cache, interleaved."""
    import torch

    from mlperf_track.engine.generation import measure_generation
    from mlperf_track.models.registry import load_model
    from mlperf_track.variants.text_baseline import build_text_module, text_artifact

    model_ref = args.model or ("hf-config:gpt2-tiny" if args.smoke else "hf-config:gpt2-small")
    prompt_len, output_len, rounds = (16, 8, 2) if args.smoke else (128, 64, 5)
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_model(model_ref)
    artifact = text_artifact(loaded, build_text_module(loaded, None, 0), prompt_len, {})  # type: ignore[arg-type]
    from mlperf_track.runtimes.base import PrepareRequest
    from mlperf_track.runtimes.registry import get_runtime

    rows = []
    timing = SMOKE_TIMING if args.smoke else replace(TIMING, max_time_s=10.0)
    for batch in (1, 8):
        request = PrepareRequest(
            device="cpu",
            precision="fp32",
            batch_sizes=(batch,),
            input_shape=(prompt_len,),
            max_sequence=prompt_len + output_len,
            options={"decode_loop": "forward"},
        )
        prepared: Any = get_runtime("eager").prepare(artifact, request)
        prompt = prepared.make_input(batch)
        engine_ttft, engine_tpot, hand_ttft, hand_tpot = [], [], [], []
        for _ in range(rounds):
            measured = measure_generation(
                prepared.generation_run(prompt, output_len),
                device="cpu",
                batch_size=batch,
                output_len=output_len,
                timing=timing,
                monitors=False,
            )
            engine_ttft.append(measured.metrics[m.TTFT_P50])
            engine_tpot.append(measured.metrics[m.TPOT_P50])
            hand = [_hand_loop(prepared._model, prompt, output_len) for _ in range(max(len(measured.samples), 3))]
            hand_ttft.append(statistics.median(t for t, _ in hand))
            hand_tpot.append(statistics.median(g for _, gaps in hand for g in gaps))
        prepared.close()
        for name, engine_values, hand_values in (("TTFT", engine_ttft, hand_ttft), ("TPOT", engine_tpot, hand_tpot)):
            engine_ms, hand_ms = statistics.median(engine_values), statistics.median(hand_values)
            ratio = engine_ms / hand_ms
            verdict = "ok" if abs(ratio - 1) <= 0.03 else "OUT"
            rows.append([name, str(batch), f"{engine_ms:.3f}", f"{hand_ms:.3f}", f"{ratio - 1:+.1%}", verdict])
    header = ["metric", "batch", "engine p50 ms", "hand loop p50 ms", "difference", "within 3%"]
    _table(f"engine fidelity, {model_ref}, prompt {prompt_len}, {output_len} new tokens, {rounds} rounds", header, rows)


SECTIONS: dict[str, Callable[[argparse.Namespace], None]] = {
    "encoder": encoder,
    "decoder": decoder,
    "quality": quality,
    "fidelity": fidelity,
}


def main(argv: list[str] | None = None) -> int:
    """Run the chosen sections and print their tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("section", choices=[*SECTIONS, "all"])
    parser.add_argument("--model", default=None, help="a model for the section instead of its default")
    parser.add_argument("--smoke", action="store_true", help="tiny models and short windows (checks the script)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    parser.add_argument("--output-dir", type=Path, default=Path("mlperf_track_output/benchmarks_transformers"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    for name, section in SECTIONS.items():
        if args.section in (name, "all"):
            section(args)
    print(f"\n(total {time.perf_counter() - started:.0f} s; `{' '.join(['python', *sys.argv])}`)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
