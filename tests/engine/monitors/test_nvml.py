"""NVML device matching (by the device's own UUID, MIG included, never by index) and the torch-free GPU facts.

NVML needs an NVIDIA driver, absent here: a fake ``pynvml`` module stands in for the library; the matching and
parsing logic under test is the real one.
"""

from __future__ import annotations

import types
from typing import Any

import pytest

from mlperf_track.engine.monitors import nvml
from mlperf_track.engine.monitors.nvml import (
    NvmlUnavailableError,
    gpu_facts,
    handle_by_uuid,
    nvml_uuid_candidates,
    visible_handles,
)

GPU0 = "GPU-11111111-2222-3333-4444-555555555555"
GPU1 = "GPU-66666666-7777-8888-9999-000000000000"
MIG = "MIG-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"


class FakeNvmlError(Exception):
    pass


def fake_pynvml(devices: dict[str, dict[str, Any]], indexed: list[str]) -> Any:
    """A pynvml stand-in: ``devices`` by UUID (MIG instances included), ``indexed`` the whole GPUs by index."""

    def by_uuid(uuid: str) -> str:
        if uuid not in devices:
            raise FakeNvmlError(f"not found: {uuid}")
        return uuid

    def by_index(index: int) -> str:
        if not 0 <= index < len(indexed):
            raise FakeNvmlError(f"bad index {index}")
        return indexed[index]

    def memory(handle: str) -> Any:
        return types.SimpleNamespace(total=devices[handle]["memory"], used=devices[handle]["memory"] // 4)

    def capability(handle: str) -> tuple[int, int]:
        if handle.startswith("MIG-"):
            raise FakeNvmlError("Not Supported")
        return devices[handle]["capability"]

    return types.SimpleNamespace(
        NVMLError=FakeNvmlError,
        nvmlDeviceGetHandleByUUID=by_uuid,
        nvmlDeviceGetHandleByIndex=by_index,
        nvmlDeviceGetCount=lambda: len(indexed),
        nvmlDeviceGetUUID=lambda handle: handle,
        nvmlDeviceGetName=lambda handle: devices[handle]["name"].encode(),
        nvmlDeviceGetMemoryInfo=memory,
        nvmlDeviceGetCudaComputeCapability=capability,
        nvmlSystemGetDriverVersion=lambda: "580.65.06",
    )


DEVICES = {
    GPU0: {"name": "NVIDIA H100 80GB HBM3", "memory": 80 << 30, "capability": (9, 0)},
    GPU1: {"name": "NVIDIA A100-SXM4-40GB", "memory": 40 << 30, "capability": (8, 0)},
    MIG: {"name": "NVIDIA A100-SXM4-40GB MIG 1g.5gb", "memory": 5 << 30, "capability": (8, 0)},
}


def test_uuid_candidates_try_the_gpu_and_the_mig_form() -> None:
    bare = MIG.removeprefix("MIG-")
    assert nvml_uuid_candidates(bare) == [f"GPU-{bare}", MIG]
    assert nvml_uuid_candidates(MIG) == [MIG]
    assert nvml_uuid_candidates("  ") == []


def test_a_mig_instance_is_matched_by_its_own_uuid() -> None:
    pynvml = fake_pynvml(DEVICES, [GPU0, GPU1])
    assert handle_by_uuid(pynvml, MIG.removeprefix("MIG-")) == MIG  # torch reports the UUID without a prefix
    assert handle_by_uuid(pynvml, GPU1.removeprefix("GPU-")) == GPU1


def test_an_unknown_uuid_never_falls_back_to_an_index() -> None:
    pynvml = fake_pynvml(DEVICES, [GPU0, GPU1])
    with pytest.raises(NvmlUnavailableError, match="no device with the CUDA device's UUID"):
        handle_by_uuid(pynvml, "12345678-0000-0000-0000-000000000000")
    with pytest.raises(NvmlUnavailableError, match="reports no UUID"):
        handle_by_uuid(pynvml, "")


@pytest.mark.parametrize(
    ("visible", "expected"),
    [
        (None, [GPU0, GPU1]),
        ("", []),
        ("1", [GPU1]),
        ("1,0", [GPU1, GPU0]),
        (f"{GPU1},{GPU0}", [GPU1, GPU0]),
        ("GPU-6666", [GPU1]),  # a unique prefix, as CUDA accepts
        (MIG, [MIG]),
        ("0,7,1", [GPU0]),  # CUDA stops at the first entry naming no device
        ("-1", []),
    ],
)
def test_visible_devices_follow_cuda_visible_devices(visible: str | None, expected: list[str]) -> None:
    assert visible_handles(fake_pynvml(DEVICES, [GPU0, GPU1]), visible) == expected


def _use(monkeypatch: pytest.MonkeyPatch, pynvml: Any, visible: str | None) -> None:
    monkeypatch.setattr(nvml, "_init_nvml", lambda: pynvml)
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)


def test_gpu_facts_describe_the_first_visible_device(monkeypatch: pytest.MonkeyPatch) -> None:
    _use(monkeypatch, fake_pynvml(DEVICES, [GPU0, GPU1]), "1,0")
    assert gpu_facts() == {
        "hw.gpu": "NVIDIA A100-SXM4-40GB",
        "hw.gpu_count": "2",
        "hw.gpu_memory_mb": str(40 << 10),
        "hw.gpu_capability": "8.0",
        "hw.gpu_driver": "580.65.06",
    }


def test_gpu_facts_of_a_mig_instance_keep_what_nvml_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    _use(monkeypatch, fake_pynvml(DEVICES, [GPU0, GPU1]), MIG)
    facts = gpu_facts()
    assert facts["hw.gpu"] == "NVIDIA A100-SXM4-40GB MIG 1g.5gb"
    assert facts["hw.gpu_memory_mb"] == str(5 << 10)
    assert "hw.gpu_capability" not in facts  # not answered for a MIG handle: absent, not invented


def test_gpu_facts_with_no_visible_device(monkeypatch: pytest.MonkeyPatch) -> None:
    _use(monkeypatch, fake_pynvml(DEVICES, [GPU0]), "")
    assert gpu_facts() == {"hw.gpu": "none", "hw.gpu_count": "0"}


def test_without_a_driver_nvml_is_never_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    nvml._init_nvml.cache_clear()
    monkeypatch.setattr(nvml, "DRIVER_PROBES", ())
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setitem(sys.modules, "pynvml", None)  # an import would raise ImportError, not the driver note
    try:
        with pytest.raises(NvmlUnavailableError, match="no NVIDIA driver"):
            nvml._init_nvml()
        assert gpu_facts() == {"hw.gpu": "none"}
    finally:
        nvml._init_nvml.cache_clear()
