"""The same logging against a real ``mlflow server`` (HTTP tracking, proxied artifacts)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from tracking_helpers import isolated_mlflow, make_result

from mlperf_track import metrics as m
from mlperf_track.pipeline.config import PipelineConfig
from mlperf_track.pipeline.events import CaseOutcome, PipelineOutcome
from mlperf_track.spec import TimingConfig
from mlperf_track.tracking.listener import MlflowPipelineListener

REPO = Path(__file__).resolve().parents[2]
PIPELINE_READY = (REPO / "mlperf_track" / "variants" / "registry.py").is_file()
pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(url: str, process: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"mlflow server at {url} not healthy after {timeout_s} s")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``mlflow server`` on 127.0.0.1 and a free port, SQLite backend, proxied artifact store; stopped after."""
    root = tmp_path_factory.mktemp("server")
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{root / 'server.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
    ]
    log = (root / "server.log").open("wb")
    process = subprocess.Popen(command, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process)
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # the server and its uvicorn workers, all started here
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()


@pytest.fixture
def remote(server: str, tmp_path: Path) -> Iterator[str]:
    with isolated_mlflow(server, f"server-{time.monotonic_ns()}", tmp_path) as experiment_id:
        yield experiment_id


def test_listener_against_a_server(remote: str, tmp_path: Path) -> None:
    import mlflow

    results = [make_result(batch_size=1, p50=2.0), make_result(batch_size=4, p50=3.0)]
    config = PipelineConfig(model="tinycnn", device="cpu", batch_sizes=(1, 4), image_size=8)
    with mlflow.start_run() as parent:
        listener = MlflowPipelineListener(parent.info.run_id, log_model=False)
        listener.on_pipeline_start(config, [r.case for r in results])
        outcome = PipelineOutcome(config=config)
        for result in results:
            listener.on_case_start(result.case)
            outcome.outcomes.append(CaseOutcome(case=result.case, result=result))
            listener.on_case_end(outcome.outcomes[-1])
        listener.on_pipeline_end(outcome)
    client = mlflow.MlflowClient()
    children = client.search_runs([remote], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(run.data.metrics[m.THROUGHPUT] for run in children) == pytest.approx([500.0, 4000 / 3])
    assert client.get_run(parent.info.run_id).data.tags["best.case"] == results[1].case.name
    artifact_uri = client.get_run(parent.info.run_id).info.artifact_uri
    assert artifact_uri.startswith("mlflow-artifacts:")  # artifacts go through the server
    report = mlflow.artifacts.load_text(f"runs:/{parent.info.run_id}/report/report.md")
    assert "Ship baseline/eager/fp32 at batch 4" in report  # the recommendation names the best case
    samples = mlflow.artifacts.load_text(f"runs:/{children[0].info.run_id}/samples.csv")
    assert samples.startswith("iteration,latency_ms")


@pytest.mark.skipif(not PIPELINE_READY, reason="the pipeline is not written yet")
def test_tracked_pipeline_against_a_server(remote: str, tmp_path: Path) -> None:
    import mlflow

    from mlperf_track.tracking.pipeline_run import run_tracked_pipeline

    timing = TimingConfig(warmup_iters=1, warmup_s=0.0, min_iters=3, max_iters=20, max_time_s=0.2, target_rel_ci=0.5)
    config = PipelineConfig(
        model="tinycnn",
        device="cpu",
        batch_sizes=(1, 2),
        image_size=16,
        epochs=0,
        timing=timing,
        cache_dir=tmp_path / "cache",
        output_dir=tmp_path / "out",
    )
    outcome = run_tracked_pipeline(config)
    assert len(outcome.results) == 2
    client = mlflow.MlflowClient()
    runs = client.search_runs([remote])
    parent = next(run for run in runs if "mlflow.parentRunId" not in run.data.tags)
    assert parent.info.status == "FINISHED"
    assert len([run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]) == 2
    model = mlflow.pytorch.load_model(f"runs:/{parent.info.run_id}/baseline")
    assert sum(p.numel() for p in model.parameters()) > 0
