"""``mlperf-track load``: VALID/INVALID lines and max_qps on a real model, and one line with exit 2 per bad input."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch

from mlperf_track.cli import main

TINY = ["--model", "tinycnn", "--image-size", "16", "--device", "cpu", "--num-threads", "1"]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLPERF_TRACK_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)


def test_server_search_prints_verdicts_split_and_max_qps(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    output = tmp_path / "points.json"
    code = main(
        ["load", *TINY, "--scenario", "server", "--latency-bound-ms", "50", "--min-duration", "0.3",
         "--tolerance", "0.3", "--no-track", "--output", str(output)]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    assert "server@" in printed and ("VALID" in printed or "INVALID" in printed)
    assert "achieved" in printed and "queueing" in printed and "compute" in printed
    assert "max_qps:" in printed
    results = json.loads(output.read_text())["results"]
    assert results and all(result["config"]["scenario"] == "server" for result in results)
    assert not (tmp_path / "mlflow.db").exists()  # --no-track logs nothing


def test_a_rate_sweep_is_logged_as_a_parent_and_children(tmp_path: Path) -> None:
    import mlflow

    code = main(
        ["load", *TINY, "--scenario", "server", "--rate", "40,80", "--latency-bound-ms", "100", "--min-duration",
         "0.3", "--min-queries", "20", "--no-early-stopping", "--max-batch-size", "4", "--max-queue-delay-ms", "1",
         "--experiment", "cli-load"]
    )  # fmt: skip
    assert code == 0
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["cli-load"], output_format="list")
    names = sorted(run.info.run_name for run in runs)
    assert names == ["load tinycnn", "server@40qps", "server@80qps"]


def test_single_stream_reports_a_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["load", *TINY, "--scenario", "single_stream", "--min-duration", "0.2", "--no-track"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "single_stream: VALID" in printed or "single_stream: INVALID" in printed
    assert "p90" in printed


def _payload(tmp_path: Path) -> str:
    path = tmp_path / "rows.json"
    path.write_text(json.dumps([[1.0, 2.0]]))
    return str(path)


def _bad_inputs(tmp_path: Path) -> list[tuple[list[str], str]]:
    return [
        (["--rate", "0", "--latency-bound-ms", "10"], "--rate"),
        (["--rate", "-5", "--latency-bound-ms", "10"], "--rate"),
        (["--rate", "fast", "--latency-bound-ms", "10"], "--rate"),
        (["--latency-bound-ms", "0"], "--latency-bound-ms"),
        (["--latency-bound-ms", "-3"], "--latency-bound-ms"),
        ([], "--latency-bound-ms"),  # server without a bound
        (["--scenario", "severs"], "--scenario"),
        (["--workers", "0", "--latency-bound-ms", "10"], "--load-workers"),  # --workers is its other spelling
        (["--load-workers", "0", "--latency-bound-ms", "10"], "--load-workers"),
        (["--max-batch-size", "2,4", "--latency-bound-ms", "10"], "--max-batch-size"),
        (["--max-queue-delay-ms", "-1", "--latency-bound-ms", "10"], "--max-queue-delay-ms"),
        (["--background-load", "cpu:x", "--latency-bound-ms", "10"], "--background-load"),
        (["--cpu-cores", "9999", "--latency-bound-ms", "10"], "cpu_cores"),
        (["--percentile", "150", "--scenario", "single_stream"], "--percentile"),
    ]


def test_bad_inputs_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for extra, name in _bad_inputs(tmp_path):
        code = main(["load", *TINY, *extra, "--no-track"])
        err = capsys.readouterr().err
        assert code == 2, (extra, err)
        lines = [line for line in err.strip().splitlines() if "error" in line]
        assert len(lines) == 1 and name in lines[0], (extra, err)
        assert "Traceback" not in err


def test_a_url_off_this_machine_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["load", "--url", "http://8.8.8.8:5000", "--payload", _payload(tmp_path), "--scenario",
                 "single_stream", "--no-track"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "--url" in err and "not an address of this machine" in err
    code = main(["load", "--url", "http://127.0.0.1:5000", "--scenario", "single_stream", "--no-track"])
    assert code == 2 and "--payload" in capsys.readouterr().err


def test_a_busy_port_is_refused_for_the_server(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(["load", "--serve", "models:/m/1", "--port", str(port), "--payload", "x", "--no-track",
                     "--trust-pickle"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "--port" in err and "in use" in err


@pytest.mark.parametrize("trust", [[], ["--trust-pickle", "false"]])
def test_serving_a_logged_model_needs_trust_pickle(trust: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["load", "--serve", "models:/m/1", "--payload", "x", "--no-track", *trust])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--trust-pickle" in err and "can run code" in err and len(err.splitlines()) == 1


def test_trust_pickle_takes_only_true_or_false(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["load", "--serve", "models:/m/1", "--no-track", "--trust-pickle", "maybe"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--trust-pickle" in err and "true or false" in err


def test_a_url_that_does_not_answer_is_counted_not_hidden(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = main(["load", "--url", f"http://127.0.0.1:{port}", "--payload", _payload(tmp_path), "--scenario",
                 "single_stream", "--no-track"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1  # the point failed in its warm-up: refused connections, reported in one line
    assert "refused" in err.lower() or "refused" in capsys.readouterr().out.lower()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without a GPU")
def test_gpu_memory_fraction_without_a_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["load", *TINY, "--scenario", "single_stream", "--gpu-memory-fraction", "0.5", "--no-track"])
    assert code == 2 and "CUDA" in capsys.readouterr().err
