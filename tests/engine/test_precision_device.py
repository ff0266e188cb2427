"""precision_settings, dtype_for, device helpers and environment tags."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from mlperf_track.engine.device import is_out_of_memory, release_memory, resolve_device, synchronize
from mlperf_track.engine.environment import cpu_model, environment_tags
from mlperf_track.engine.precision import dtype_for, precision_settings
from mlperf_track.errors import ConfigError, DeviceError, OutOfMemoryError


@pytest.fixture(autouse=True)
def _restore_flags() -> Iterator[None]:
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    precision = torch.get_float32_matmul_precision()
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
    torch.set_float32_matmul_precision(precision)


def test_fp32_pins_tf32_off_and_restores() -> None:
    torch.backends.cudnn.allow_tf32 = True
    torch.set_float32_matmul_precision("high")
    with precision_settings("fp32", "cuda") as tags:
        assert torch.backends.cudnn.allow_tf32 is False
        assert torch.backends.cuda.matmul.allow_tf32 is False
        assert torch.get_float32_matmul_precision() == "highest"
    assert tags["precision.cudnn_allow_tf32"] == "false" and tags["precision.matmul_allow_tf32"] == "false"
    assert tags["precision.dtype"] == "float32" and tags["precision.device"] == "cuda"
    assert torch.backends.cudnn.allow_tf32 is True and torch.get_float32_matmul_precision() == "high"


def test_tf32_turns_it_on() -> None:
    torch.backends.cudnn.allow_tf32 = False
    with precision_settings("tf32", "cuda") as tags:
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    assert tags["precision.float32_matmul_precision"] == "high"
    assert torch.backends.cudnn.allow_tf32 is False


def test_restores_after_an_error_and_with_the_new_api() -> None:
    torch.backends.cuda.matmul.fp32_precision = "tf32"  # the torch >= 2.9 API: legacy reads now refuse
    with pytest.raises(KeyError), precision_settings("bf16", "cpu") as tags:
        raise KeyError("boom")
    assert tags["precision.dtype"] == "bfloat16" and tags["precision.matmul_allow_tf32"] == "false"
    assert torch.backends.cuda.matmul.fp32_precision == "tf32"
    torch.backends.cuda.matmul.fp32_precision = "ieee"


def test_dtype_for() -> None:
    assert [dtype_for(p) for p in ("fp32", "tf32", "fp16", "bf16", "int8", "fp8")] == [
        torch.float32,
        torch.float32,
        torch.float16,
        torch.bfloat16,
        None,
        None,
    ]
    with pytest.raises(ConfigError, match="precision"):
        dtype_for("fp64")


def test_resolve_device() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == expected and resolve_device("cpu") == "cpu"
    with pytest.raises(ConfigError, match="device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="--device cpu"):
            resolve_device("cuda")


def test_is_out_of_memory() -> None:
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory"))
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate"))
    assert is_out_of_memory(MemoryError()) and is_out_of_memory(OutOfMemoryError("x"))
    try:
        try:
            raise MemoryError
        except MemoryError as inner:
            raise ValueError("wrapped") from inner
    except ValueError as outer:
        assert is_out_of_memory(outer)
    assert not is_out_of_memory(RuntimeError("shape mismatch")) and not is_out_of_memory(ValueError())


def test_synchronize_and_release_on_cpu() -> None:
    synchronize("cpu")
    release_memory("cpu")


def test_environment_tags(tmp_path: Path) -> None:
    tags = environment_tags()
    for key in ("hw.cpu", "hw.cpu_cores", "hw.gpu", "sw.torch", "sw.cuda", "sw.python", "sw.mlperf_track"):
        assert tags[key]
    tags["hw.cpu"] = "changed"
    assert environment_tags()["hw.cpu"] != "changed"  # callers get copies of the cached facts
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Example CPU 9000\n")
    assert cpu_model(cpuinfo) == "Example CPU 9000"
