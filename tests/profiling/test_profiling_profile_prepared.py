"""``profile_prepared`` on a real tiny conv net under torch.profiler: every file, and what it says."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from mlperf_track.errors import ConfigError, MeasurementError
from mlperf_track.profiling import fold_events, profile_prepared
from mlperf_track.profiling.torch_profile import OPAQUE_NOTE
from mlperf_track.runtimes.base import PreparedModel

SVG = "{http://www.w3.org/2000/svg}"
LABEL = "convnet-eager-fp32-bs8"


class ModulePrepared(PreparedModel):
    """The smallest eager runtime: call a module under inference mode."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module.eval()
        self.device = "cpu"
        self.tags = {}

    def make_input(self, batch_size: int, seed: int = 0) -> Any:
        return torch.randn(batch_size, 3, 64, 64, generator=torch.Generator().manual_seed(seed))

    def __call__(self, inputs: Any) -> Any:
        with torch.inference_mode():
            return self.module(inputs)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return self(images)


class NumpyPrepared(ModulePrepared):
    """A runtime whose work happens outside PyTorch (like ONNX Runtime): numpy matrix products."""

    def __init__(self) -> None:
        super().__init__(nn.Identity())
        self.weight = np.random.default_rng(0).standard_normal((3 * 64 * 64, 256)).astype(np.float32)

    def __call__(self, inputs: Any) -> Any:
        return np.maximum(inputs.numpy().reshape(len(inputs), -1) @ self.weight, 0)


class Broken(ModulePrepared):
    def __call__(self, inputs: Any) -> Any:
        raise RuntimeError("kernel exploded")


def conv_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


@pytest.fixture(scope="module")
def profiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.manual_seed(0)
    prepared = ModulePrepared(conv_net())
    output_dir = tmp_path_factory.mktemp("profile")
    return profile_prepared(prepared, prepared.make_input(8), device="cpu", output_dir=output_dir, steps=3, label=LABEL)


def _frame_names(svg_path: Path) -> list[str]:
    root = ET.parse(svg_path).getroot()
    return [desc.text or "" for group in root.iter(f"{SVG}g") if (desc := group.find(f"{SVG}desc")) is not None]


def test_writes_every_file(profiled: dict[str, Path]) -> None:
    expected = {
        "trace.json",
        "flamegraph.svg",
        "stacks.txt",
        "top_ops.md",
        "python.prof",
        "python_stats.txt",
        "python_profile.html",
    }
    assert set(profiled) == expected
    for path in profiled.values():
        assert path.is_file() and path.stat().st_size > 0


def test_flame_graph_names_the_heaviest_operators(profiled: dict[str, Path]) -> None:
    names = _frame_names(profiled["flamegraph.svg"])
    assert names[0] == LABEL  # the root frame
    assert "aten::conv2d" in names and "aten::addmm" in names
    assert "nn.Module: Conv2d_0" in names and "nn.Module: Linear_1" in names
    root = ET.parse(profiled["flamegraph.svg"]).getroot()
    widths: dict[str, float] = {}
    for group in root.iter(f"{SVG}g"):
        desc = group.find(f"{SVG}desc")
        if group.get("class") == "f" and desc is not None:
            name = desc.text or ""
            widths[name] = widths.get(name, 0.0) + float(group.get("data-w", "0"))
    # Convolutions dominate a conv net: the widest operator frame is a convolution.
    operators = {name: width for name, width in widths.items() if name and name.startswith("aten::")}
    assert "conv" in max(operators, key=operators.__getitem__)


def test_top_ops_and_folded_stacks(profiled: dict[str, Path]) -> None:
    table = profiled["top_ops.md"].read_text()
    first_row = next(line for line in table.splitlines() if line.startswith("| aten::"))
    assert "conv" in first_row  # heaviest by self CPU time
    assert "aten::addmm" in table and "Calls/step" in table
    assert LABEL not in first_row
    stacks = profiled["stacks.txt"].read_text().splitlines()
    assert all(line.startswith(LABEL) and line.rsplit(" ", 1)[1].isdigit() for line in stacks)
    assert any(line.split(" ")[0].endswith("aten::addmm") or ";aten::addmm;" in line for line in stacks)


def test_trace_is_a_chrome_trace_with_the_step_markers(profiled: dict[str, Path]) -> None:
    trace = json.loads(profiled["trace.json"].read_text())
    names = [event.get("name") for event in trace["traceEvents"]]
    assert names.count(LABEL) == 3  # one range per recorded step; the warm-up step is not recorded
    assert "aten::conv2d" in names


def test_fold_events_attributes_self_time_to_operators() -> None:
    from torch.profiler import ProfilerActivity, profile, record_function

    net = conv_net().eval()
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU], with_stack=True) as prof:
        with record_function("mark"):
            net(torch.randn(2, 3, 16, 16))
        net(torch.randn(2, 3, 16, 16))  # outside the marker: ignored
    events = prof.events()
    stacks = fold_events(events, marker="mark")
    marked = next(event for event in events if event.name == "mark")
    assert sum(stacks.values()) == pytest.approx(marked.cpu_time_total, rel=0.02)
    only_ops = fold_events(events, marker="mark", python_frames="none")
    assert all(not frame.startswith("nn.Module") for stack in only_ops for frame in stack)
    with pytest.raises(ConfigError):
        fold_events(events, marker="mark", time="gpu")


def test_opaque_runtime_gets_python_stacks_and_a_note(tmp_path: Path) -> None:
    prepared = NumpyPrepared()
    files = profile_prepared(
        prepared,
        prepared.make_input(4),
        device="cpu",
        output_dir=tmp_path,
        steps=2,
        label="numpy",
        python_profile=False,
    )
    assert set(files) == {"trace.json", "flamegraph.svg", "stacks.txt", "top_ops.md"}
    assert OPAQUE_NOTE in files["top_ops.md"].read_text()
    names = _frame_names(files["flamegraph.svg"])
    assert any(".py(" in name for name in names)


def test_bad_arguments_and_failures(tmp_path: Path) -> None:
    prepared = ModulePrepared(conv_net())
    inputs = prepared.make_input(1)
    with pytest.raises(ConfigError, match="steps"):
        profile_prepared(prepared, inputs, device="cpu", output_dir=tmp_path, steps=0)
    with pytest.raises(ConfigError, match="device"):
        profile_prepared(prepared, inputs, device="tpu", output_dir=tmp_path)
    with pytest.raises(MeasurementError, match="kernel exploded"):
        profile_prepared(Broken(conv_net()), inputs, device="cpu", output_dir=tmp_path, steps=1)


class CudaPrepared(ModulePrepared):
    """The eager runtime on the GPU."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__(module.cuda())
        self.device = "cuda"

    def make_input(self, batch_size: int, seed: int = 0) -> Any:
        return super().make_input(batch_size, seed).cuda()


@pytest.mark.gpu
def test_cuda_profile_weighs_the_flame_graph_by_kernel_time(tmp_path: Path) -> None:
    prepared = CudaPrepared(conv_net())
    files = profile_prepared(
        prepared,
        prepared.make_input(8),
        device="cuda",
        output_dir=tmp_path,
        steps=3,
        label="cuda-case",
        python_profile=False,
    )
    assert {"flamegraph.svg", "flamegraph_cpu.svg", "top_ops.md", "trace.json"} <= set(files)
    assert "aten::conv2d" in _frame_names(files["flamegraph.svg"])
    assert "CUDA time" in files["flamegraph.svg"].read_text()
    assert "Self CUDA ms/step" in files["top_ops.md"].read_text()
