"""``mlperf-track bench`` on text models: one row per sequence length and batch size; bad lengths exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlperf_track.cli import main

pytest.importorskip("transformers")
FAST = ["--max-time", "0.2", "--target-ci", "0.5", "--device", "cpu"]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLPERF_TRACK_CACHE", str(tmp_path / "cache"))


def test_bench_prints_one_row_per_sequence_length_and_batch_size(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "--model", "hf-config:bert-tiny", "--seq-len", "16,32", "--batch-size", "1,2", *FAST])
    out = capsys.readouterr().out
    assert code == 0, out
    for seq in (16, 32):
        for batch in (1, 2):
            assert f"baseline-eager-fp32-bs{batch}-seq{seq}" in out
    assert "tokens/s" in out


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["--model", "hf-config:bert-tiny", "--seq-len", "1024"], "invalid seq_len=1024"),
        (["--model", "hf-config:gpt2-tiny", "--output-len", "0"], "invalid --output-lens='0'"),
        (["--model", "hf-config:gpt2-tiny", "--prompt-len", "600"], "invalid prompt_len=600"),
        (["--model", "hf-config:nope"], "invalid model='nope'"),
        (["--model", "hf:/no/such/folder"], "config.json"),
    ],
)
def test_bad_text_input_is_one_line_and_exit_2(
    arguments: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["bench", *arguments, *FAST])
    err = capsys.readouterr().err.strip()
    assert code == 2
    # Lengths are checked against the loaded model, so its "loaded model" log line may come first.
    errors = [line for line in err.splitlines() if "error:" in line]
    assert errors == [err.splitlines()[-1]], err
    assert expected in errors[0] and "Traceback" not in err
