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


@pytest.mark.parametrize("wanted", [False, True])
def test_cudnn_autotuning_is_pinned_per_case_tagged_and_restored(wanted: bool) -> None:
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = not wanted  # whatever the process had set must not leak into the case
    try:
        with precision_settings("fp32", "cpu", cudnn_benchmark=wanted) as tags:
            assert torch.backends.cudnn.benchmark is wanted
            assert tags["precision.cudnn_benchmark"] == str(wanted).lower()
        assert torch.backends.cudnn.benchmark is (not wanted)
    finally:
        torch.backends.cudnn.benchmark = previous


def test_host_tags_need_no_torch_and_agree_with_it() -> None:
    from mlperf_track.engine.environment import host_tags, torch_versions

    tags = host_tags()
    assert tags["sw.torch"] == torch.__version__ and tags["sw.cuda"] == (torch.version.cuda or "none")
    assert tags["hw.cpu"] and int(tags["hw.cpu_cores"]) >= 1
    assert torch_versions() == {"sw.torch": torch.__version__, "sw.cuda": torch.version.cuda or "none"}
    if not torch.cuda.is_available():
        assert environment_tags()["hw.gpu"] == "none"


def test_torch_versions_are_read_from_the_file_when_torch_is_not_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.machinery
    import sys

    from mlperf_track.engine import environment

    package = tmp_path / "torch"
    package.mkdir()
    (package / "version.py").write_text(
        "from typing import Optional\n__version__ = '9.9.9+cu999'\ncuda: Optional[str] = '99.9'\nhip = None\n"
    )
    spec = importlib.machinery.ModuleSpec("torch", None, is_package=True)
    spec.submodule_search_locations = [str(package)]
    monkeypatch.setitem(sys.modules, "torch", None)  # as in a process that never imported torch
    monkeypatch.setattr(environment.importlib.util, "find_spec", lambda name: spec)
    assert environment.torch_versions() == {"sw.torch": "9.9.9+cu999", "sw.cuda": "99.9"}
