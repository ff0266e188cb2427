"""On a real GPU: ONNX Runtime and TensorRT compute on their own stream, joined to the caller's (gpu marker)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mlperf_track.engine.clock import PerfCounterClock
from mlperf_track.engine.timing import CudaEventTimer, SyncClockTimer
from mlperf_track.models.artifact import ModelArtifact
from mlperf_track.runtimes import PrepareRequest, get_runtime

from .conftest import INPUT_SHAPE, NUM_CLASSES

pytestmark = pytest.mark.gpu


def _prepared(name: str, net: torch.nn.Module, cache_dir: Path) -> object:
    runtime = get_runtime(name)
    if runtime.unavailable_reason() is not None:
        pytest.skip(runtime.unavailable_reason())
    precisions = runtime.capabilities().precisions("cuda")
    precision = next((p for p in ("fp32", "fp16", "tf32") if p in precisions), None)
    if precision is None:
        pytest.skip(f"{name} runs no float precision on this GPU")
    artifact = ModelArtifact("tiny", INPUT_SHAPE, module=net, num_classes=NUM_CLASSES)
    return runtime.prepare(artifact, PrepareRequest("cuda", precision, (1, 64), INPUT_SHAPE, cache_dir=cache_dir))


@pytest.mark.parametrize("name", ["onnxruntime", "tensorrt"])
def test_results_read_on_the_callers_stream_are_complete(name: str, net: torch.nn.Module, cache_dir: Path) -> None:
    prepared = _prepared(name, net, cache_dir)
    try:
        inputs = prepared.make_input(64, seed=3)  # type: ignore[attr-defined]
        expected = prepared.predict(inputs.float().cpu())  # type: ignore[attr-defined]
        caller = torch.cuda.Stream()
        with torch.cuda.stream(caller):
            caller.wait_stream(torch.cuda.default_stream())
            for _ in range(3):  # queue several calls: a missing join would let the copy overtake them
                outputs = prepared(inputs)  # type: ignore[operator]
            copied = outputs.to("cpu", torch.float32)  # ordered on the caller's stream only
        tolerance = 2e-2 if outputs.dtype != torch.float32 else 1e-4
        torch.testing.assert_close(copied, expected, rtol=tolerance, atol=tolerance * float(expected.abs().max()))
        assert prepared.tags["runtime.experimental"] == "true"  # type: ignore[attr-defined]
    finally:
        prepared.close()  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["onnxruntime", "tensorrt"])
def test_cuda_events_on_the_callers_stream_cover_the_runtimes_work(
    name: str, net: torch.nn.Module, cache_dir: Path
) -> None:
    prepared = _prepared(name, net, cache_dir)
    try:
        inputs = prepared.make_input(64)  # type: ignore[attr-defined]
        for _ in range(10):
            prepared(inputs)  # type: ignore[operator]
        torch.cuda.synchronize()
        events, host = CudaEventTimer(), SyncClockTimer(PerfCounterClock(), "cuda")
        by_events = sorted(events.time_call(lambda: prepared(inputs)) for _ in range(30))[15]  # type: ignore[operator]
        by_host = sorted(host.time_call(lambda: prepared(inputs)) for _ in range(30))[15]  # type: ignore[operator]
        # the host clock after a device-wide synchronize sees every stream; events joined correctly see the
        # same work minus the launch and synchronisation overhead (never a fraction of it)
        assert 0.3 * by_host <= by_events <= 1.1 * by_host
    finally:
        prepared.close()  # type: ignore[attr-defined]
