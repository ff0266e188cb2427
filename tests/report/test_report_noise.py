"""compare that knows noise: a noise floor or replicates must be cleared before a change is a regression."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from report_experiment_factory import latency_samples, write_samples_csv

from mlperf_track.cli import main
from mlperf_track.errors import ConfigError
from mlperf_track.report.compare import Threshold, check_regression, compare_samples, masked_by_noise
from mlperf_track.report.noise import detectable_change, parse_noise_floor, replicate_bounds, run_context

N = 400
P50_3 = Threshold("p50", 3.0)


def _replicates(medians: list[float], seed: int) -> list[np.ndarray]:
    return [latency_samples(level, seed=seed + i, n=N // len(medians)) for i, level in enumerate(medians)]


@pytest.mark.parametrize(("text", "value"), [("4%", 0.04), ("0.04", 0.04), (" 2.5 % ", 0.025), ("0", 0.0)])
def test_parse_noise_floor(text: str, value: float) -> None:
    assert parse_noise_floor(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["4", "100%", "-1%", "lots", ""])
def test_parse_noise_floor_refuses(text: str) -> None:
    with pytest.raises(ConfigError, match="--noise-floor"):
        parse_noise_floor(text)


def test_a_run_to_run_offset_is_a_regression_only_without_a_noise_floor() -> None:
    # Two runs of the same code that landed 4% apart: precise within each run, so the old test says "slower".
    base, cand = latency_samples(10.0, seed=1, n=N), latency_samples(10.4, seed=2, n=N)
    blind = compare_samples(base, cand)
    assert blind.noise.source == "none" and check_regression(blind, P50_3) is not None
    aware = compare_samples(base, cand, noise_floor=0.03)
    assert aware.noise.source == "noise-floor" and check_regression(aware, P50_3) is None
    message = masked_by_noise(aware, P50_3)
    assert message is not None and "not beyond the noise between runs" in message and "--noise-floor 3.00%" in message


def test_a_real_slowdown_clears_the_noise_floor() -> None:
    base, cand = latency_samples(10.0, seed=1, n=N), latency_samples(11.0, seed=2, n=N)
    comparison = compare_samples(base, cand, noise_floor=0.02)
    message = check_regression(comparison, P50_3)
    assert message is not None and "between-run bound +" in message and "--noise-floor 2.00%" in message
    assert comparison.changes["p50"].noise_low is not None and comparison.changes["p50"].noise_low > 1.0


def test_detectable_change_follows_the_floor() -> None:
    assert detectable_change(0.02, 0.05) == pytest.approx(np.exp(1.6449 * np.sqrt(2) * 0.02) - 1, rel=1e-3)
    assert detectable_change(0.0, 0.05) == 0.0


def test_replicates_on_both_sides_carry_the_between_run_spread() -> None:
    base_parts = _replicates([10.0, 10.5, 9.7], seed=10)  # replicates of one code wander by a few %
    same_parts = _replicates([10.4, 9.9, 10.6], seed=20)
    base, same = np.concatenate(base_parts), np.concatenate(same_parts)
    aware = compare_samples(base, same, baseline_replicates=base_parts, candidate_replicates=same_parts)
    assert aware.noise.source == "replicates" and aware.noise.detail == "3 vs 3 replicates"
    assert check_regression(aware, P50_3) is None
    slow_parts = _replicates([11.5, 11.9, 11.3], seed=30)
    slow = compare_samples(
        base, np.concatenate(slow_parts), baseline_replicates=base_parts, candidate_replicates=slow_parts
    )
    assert check_regression(slow, P50_3) is not None


def test_replicates_on_one_side_give_a_floor() -> None:
    parts = _replicates([10.0, 10.6, 9.6], seed=40)
    comparison = compare_samples(np.concatenate(parts), latency_samples(10.3, seed=1, n=N), baseline_replicates=parts)
    assert comparison.noise.source == "one-side-replicates" and comparison.noise.floor is not None
    assert comparison.noise.runs == 3
    assert "baseline's between-replicate spread" in comparison.noise.detail
    assert comparison.as_dict()["noise"]["source"] == "one-side-replicates"


def test_a_floor_beside_replicates_widens_their_bound() -> None:
    parts = _replicates([10.0, 10.1], seed=50)
    both = {"baseline_replicates": parts, "candidate_replicates": parts}
    merged = np.concatenate(parts)
    alone = compare_samples(merged, merged, **both)
    widened = compare_samples(merged, merged, noise_floor=0.05, **both)
    assert widened.noise.source == "replicates" and "--noise-floor 5.00% where wider" in widened.noise.detail
    low_alone, low_widened = alone.changes["p50"].noise_low, widened.changes["p50"].noise_low
    assert low_alone is not None and low_widened is not None and low_widened < low_alone


def test_replicate_bounds_welch() -> None:
    low, high = replicate_bounds(np.array([10.0, 10.2, 9.9]), np.array([11.0, 11.3, 10.9]), 0.05)
    assert 1.0 < low < 1.1 < high
    assert replicate_bounds(np.array([10.0, 10.0]), np.array([11.0, 11.0]), 0.05) == pytest.approx((1.1, 1.1))


def _merged_csv(path: Path, parts: list[np.ndarray]) -> Path:
    rows = ["iteration,latency_ms,replicate"]
    i = 0
    for number, part in enumerate(parts, start=1):
        for value in part:
            rows.append(f"{i},{value},{number}")
            i += 1
    path.write_text("\n".join(rows) + "\n")
    return path


def test_run_context_reads_replicates_and_validity(tmp_path: Path) -> None:
    parts = _replicates([10.0, 10.2], seed=60)
    folder = tmp_path / "case"
    folder.mkdir()
    csv_path = _merged_csv(folder / "samples.csv", parts)
    samples = np.concatenate(parts)
    result = {
        "case": {"model": "m"},
        "samples_ms": samples.tolist(),
        "replicate_counts": [len(p) for p in parts],
        "valid": False,
        "invalid_reasons": ["not stable: ..."],
    }
    (folder / "result.json").write_text(json.dumps(result))
    from_csv = run_context(str(csv_path))
    assert [len(p) for p in from_csv.replicates] == [len(p) for p in parts]
    assert from_csv.valid is False and from_csv.invalid_reasons == ("not stable: ...",)
    from_json = run_context(str(folder / "result.json"))
    assert np.allclose(np.concatenate(from_json.replicates), samples)
    bare = write_samples_csv(tmp_path / "bare.csv", samples)
    assert run_context(str(bare)).replicates == () and run_context(str(bare)).valid is None


def test_cli_noise_floor_and_invalid_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = write_samples_csv(tmp_path / "base.csv", latency_samples(10.0, seed=1, n=N))
    cand = write_samples_csv(tmp_path / "cand.csv", latency_samples(10.4, seed=2, n=N))
    out = tmp_path / "cmp.json"
    assert main(["compare", "--baseline", str(base), "--candidate", str(cand), "--fail-on", "p50:3%"]) == 1
    assert "the gate is threshold-only" in capsys.readouterr().out
    args = ["compare", "--baseline", str(base), "--candidate", str(cand), "--fail-on", "p50:3%"]
    assert main([*args, "--noise-floor", "3%", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "within noise" in printed and "smallest detectable slowdown" in printed
    assert json.loads(out.read_text())["noise"]["source"] == "noise-floor"
    result = {
        "case": {"model": "m"},
        "samples_ms": latency_samples(10.0, seed=3, n=N).tolist(),
        "valid": False,
        "invalid_reasons": ["spread too high: coefficient of variation 80.0% above 50%"],
    }
    (tmp_path / "bad.json").write_text(json.dumps(result))
    assert main(["compare", "--baseline", str(tmp_path / "bad.json"), "--candidate", str(cand)]) == 0
    assert "the baseline measurement is not valid: spread too high" in capsys.readouterr().out
    assert main([*args, "--noise-floor", "4"]) == 2
