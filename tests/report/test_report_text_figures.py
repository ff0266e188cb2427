"""Text figures: drawn from text cases only, never for image runs."""

from __future__ import annotations

import pandas as pd

from mlperf_track import metrics as m
from mlperf_track.report.text_plots import (
    LATENCY_VS_SEQ_LEN,
    TOKENS_VS_MEMORY,
    TTFT_TPOT_VS_BATCH,
    text_figures,
)


def _cases(rows: list[dict[str, object]]) -> pd.DataFrame:
    base = {"variant": "baseline", "runtime": "eager", "precision": "fp32", "memory_mb": 100.0}
    return pd.DataFrame([{**base, **row} for row in rows])


def test_encoder_cases_get_the_sequence_length_figure() -> None:
    cases = _cases(
        [
            {"seq_len": seq, "batch_size": batch, m.LATENCY_P50: seq * batch / 10, m.TOKENS_PER_S: 1000.0}
            for seq in (32, 128)
            for batch in (1, 8)
        ]
    )
    assert set(text_figures(cases)) == {LATENCY_VS_SEQ_LEN, TOKENS_VS_MEMORY}


def test_decoder_cases_get_ttft_and_tpot_against_batch() -> None:
    cases = _cases(
        [
            {"prompt_len": 128, "output_len": 64, "batch_size": batch, m.TTFT_P50: 10.0 * batch, m.TPOT_P50: 2.0,
             m.TOKENS_PER_S: 50.0 * batch}
            for batch in (1, 8)
        ]
    )  # fmt: skip
    assert set(text_figures(cases)) == {TTFT_TPOT_VS_BATCH, TOKENS_VS_MEMORY}


def test_image_cases_get_no_text_figure() -> None:
    assert text_figures(_cases([{"batch_size": 1, m.LATENCY_P50: 3.0}])) == {}
