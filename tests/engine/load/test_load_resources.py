"""Constrained resources: affinity, threads, GPU fraction (refused without a GPU), background load."""

from __future__ import annotations

import os
import threading
import time

import psutil
import pytest
import torch

from mlperf_track.engine.load.background import BackgroundLoad
from mlperf_track.engine.load.resources import ResourceLimits, constrained
from mlperf_track.errors import ConfigError, DeviceError


def test_affinity_applies_to_every_thread_and_is_restored() -> None:
    before = os.sched_getaffinity(0)
    core = min(before)
    seen: list[set[int]] = []
    ready, release = threading.Event(), threading.Event()

    def existing_thread() -> None:  # started before the limit, as PyTorch's pools are
        ready.set()
        release.wait(5)
        seen.append(set(os.sched_getaffinity(0)))

    thread = threading.Thread(target=existing_thread)
    thread.start()
    ready.wait(5)
    with constrained(ResourceLimits(cpu_cores=(core,))) as tags:
        release.set()
        thread.join(5)
        assert os.sched_getaffinity(0) == {core}
        assert tags["load.cpu_cores"] == str(core)
    assert seen == [{core}]
    assert os.sched_getaffinity(0) == before


def test_threads_are_set_and_restored() -> None:
    before = torch.get_num_threads()
    with constrained(ResourceLimits(num_threads=2)) as tags:
        assert torch.get_num_threads() == 2 and tags["load.num_threads"] == "2"
    assert torch.get_num_threads() == before


def test_a_core_this_process_cannot_use_is_refused() -> None:
    missing = max(os.sched_getaffinity(0)) + 64
    with pytest.raises(ConfigError) as error:
        ResourceLimits(cpu_cores=(missing,)).check("cpu")
    assert error.value.parameter == "cpu_cores" and str(missing) in str(error.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without a GPU")
def test_gpu_memory_fraction_without_a_gpu_is_refused_up_front() -> None:
    with pytest.raises(DeviceError, match="CUDA"), constrained(ResourceLimits(gpu_memory_fraction=0.5)):
        pytest.fail("must not get here")


@pytest.mark.gpu
def test_gpu_memory_fraction_caps_the_allocator() -> None:
    total = torch.cuda.get_device_properties(0).total_memory
    with constrained(ResourceLimits(gpu_memory_fraction=0.1), device="cuda"):
        with pytest.raises(torch.OutOfMemoryError):
            torch.empty(int(total * 0.2), dtype=torch.uint8, device="cuda")
        torch.cuda.empty_cache()
    block = torch.empty(int(total * 0.2), dtype=torch.uint8, device="cuda")  # restored to the whole device
    del block
    torch.cuda.empty_cache()


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"cpu_cores": ()}, "cpu_cores"),
        ({"cpu_cores": (-1,)}, "cpu_cores"),
        ({"num_threads": 0}, "num_threads"),
        ({"memory_limit_mb": 0.0}, "memory_limit_mb"),
        ({"gpu_memory_fraction": 0.0}, "gpu_memory_fraction"),
        ({"gpu_memory_fraction": 1.5}, "gpu_memory_fraction"),
    ],
)
def test_bad_limits(kwargs: dict[str, object], parameter: str) -> None:
    with pytest.raises(ConfigError) as error:
        ResourceLimits(**kwargs)  # type: ignore[arg-type]
    assert error.value.parameter == parameter


def test_limits_as_params() -> None:
    limits = ResourceLimits(cpu_cores=(0, 1), memory_limit_mb=512.0)
    assert limits.params() == {"limit.cpu_cores": "0,1", "limit.memory_limit_mb": "512"}
    assert limits.any and not ResourceLimits().any


@pytest.mark.parametrize(
    ("text", "expected"),
    [("cpu:2", (2, 0)), ("memory:64", (0, 64)), ("cpu:1, memory:8", (1, 8)), ("none", (0, 0)), (None, (0, 0))],
)
def test_background_load_parses(text: str | None, expected: tuple[int, int]) -> None:
    load = BackgroundLoad.parse(text)
    assert (load.cpu_workers, load.memory_mb) == expected


@pytest.mark.parametrize("text", ["cpu", "cpu:x", "gpu:1", "cpu:0", "memory:-5"])
def test_bad_background_load(text: str) -> None:
    with pytest.raises(ConfigError) as error:
        BackgroundLoad.parse(text)
    assert error.value.parameter == "--background-load"


def test_background_load_runs_while_inside_and_stops_after() -> None:
    load = BackgroundLoad(cpu_workers=1, memory_mb=32)
    with load:
        children = [psutil.Process(pid) for pid in load.pids]
        assert len(children) == 2
        hog = max(children, key=lambda child: child.memory_info().rss)
        assert hog.memory_info().rss > 30 * 2**20  # held and touched, so resident
        spinner = min(children, key=lambda child: child.memory_info().rss)
        spinner.cpu_percent(None)
        time.sleep(0.5)
        assert spinner.cpu_percent(None) > 20  # spinning (on a busy machine, well under 100)
    assert load.spec == "cpu:1,memory:32"
    for child in children:
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
