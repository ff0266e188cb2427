"""Figures stay readable at 40+ configurations: a panel per runtime, a short legend, labels on the front only."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from mlperf_track import metrics as m
from mlperf_track.report.build import build_report

VARIANTS = ("baseline", "quantized", "pruned", "distilled")
RUNTIMES = ("eager", "compile", "onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16", "int8")


def _many_configurations() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for index, (variant, runtime, precision, batch) in enumerate(
        itertools.product(VARIANTS, RUNTIMES, PRECISIONS, (1, 8, 32))
    ):
        if precision == "int8" and variant != "quantized":
            continue
        throughput = rng.uniform(100, 3000) * batch / (batch + 2)
        delta = 0.0 if (variant, precision) == ("baseline", "fp32") else float(rng.normal(-0.01, 0.01))
        rows.append(
            {
                "run_id": f"run{index:04d}",
                "run_name": f"{variant}-{runtime}-{precision}-bs{batch}",
                "status": "FINISHED",
                "parent_run_id": "parent",
                "model": "resnet50",
                "image_size": 64,
                "dataset": "digits",
                "variant": variant,
                "runtime": runtime,
                "precision": precision,
                "batch_size": batch,
                "device": "cpu",
                "hw.cpu": "a CPU",
                m.LATENCY_P50: 1000.0 * batch / throughput,
                m.THROUGHPUT: throughput,
                m.CPU_RSS_PEAK: 400.0 + batch,
                m.ACCURACY_TOP1: 0.97 + delta,
                m.ACCURACY_TOP1_DELTA: delta,
                m.ACCURACY_TOP1_DELTA_CI_LOW: delta - 0.006,
                m.ACCURACY_TOP1_DELTA_CI_HIGH: delta + 0.006,
            }
        )
    frame = pd.DataFrame(rows)
    frame["batch_size"] = frame["batch_size"].astype("Int64")
    return frame


def test_figures_of_36_configurations_have_short_legends_and_label_only_the_front() -> None:
    runs = _many_configurations()
    assert runs[["variant", "runtime", "precision"]].drop_duplicates().shape[0] == 36
    report = build_report(runs, title="many")
    figures = report.figures
    batch = figures["throughput_vs_batch_size"]
    assert len([ax for ax in batch.axes if ax.get_visible()]) == len(RUNTIMES)
    (legend,) = batch.legends
    entries = [text.get_text() for text in legend.get_texts()]
    assert len(entries) <= 2 + len(VARIANTS) + len(PRECISIONS)  # two headings, colours, markers
    trade_off = figures["accuracy_vs_latency"]
    labelled = {text.get_text() for ax in trade_off.axes for text in ax.texts}
    front = report.measured[report.measured["pareto"]]
    expected = {f"{row['config']} bs{row['batch_size']}" for _, row in front.iterrows()}
    assert expected <= labelled and len(labelled) < 36
    answer = report.questions[0].lines
    assert answer[0].startswith("Ship ") and "accuracy drop" in answer[-1]
