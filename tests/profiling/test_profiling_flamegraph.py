"""The flame graph renderer: valid SVG, widths proportional to time, hover titles, zoom script, escaping."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from mlperf_track.profiling.flamegraph import build_tree, render_flamegraph, write_flamegraph

SVG = "{http://www.w3.org/2000/svg}"
STACKS = {
    ("nn.Module: Net_0", "aten::conv2d", "aten::mkldnn_convolution"): 600.0,
    ("nn.Module: Net_0", "aten::addmm"): 300.0,
    ("nn.Module: Net_0",): 50.0,
    (): 50.0,
    ('odd <name> & "quotes"',): 0.001,  # far below the minimum width: left out
}


def _frames(svg: str) -> dict[str, ET.Element]:
    root = ET.fromstring(svg)
    frames: dict[str, ET.Element] = {}
    for group in root.iter(f"{SVG}g"):
        desc = group.find(f"{SVG}desc")
        if group.get("class") == "f" and desc is not None:
            frames[desc.text or ""] = group
    return frames


def _width(group: ET.Element) -> float:
    return float(group.find(f"{SVG}rect").get("width"))  # type: ignore[union-attr, arg-type]


def test_tree_merges_stacks_and_totals() -> None:
    root = build_tree(STACKS, "all")
    assert root.total == pytest.approx(1000.001)
    net = root.children["nn.Module: Net_0"]
    assert net.total == pytest.approx(950.0)
    assert net.self_value == 50.0


def test_svg_parses_with_proportional_widths_and_titles() -> None:
    svg = render_flamegraph(STACKS, title="net: CPU time", unit="ms/step", scale=1 / 1000, root_name="net")
    frames = _frames(svg)
    assert set(frames) == {"net", "nn.Module: Net_0", "aten::conv2d", "aten::mkldnn_convolution", "aten::addmm"}
    assert _width(frames["aten::conv2d"]) / _width(frames["net"]) == pytest.approx(0.6, rel=1e-3)
    assert _width(frames["aten::addmm"]) / _width(frames["aten::conv2d"]) == pytest.approx(0.5, rel=1e-3)
    title = frames["aten::conv2d"].find(f"{SVG}title").text  # type: ignore[union-attr]
    assert title == "aten::conv2d (0.600 ms/step, 60.00%)"
    # The root is at the bottom, callees above their callers.
    y = {name: float(group.find(f"{SVG}rect").get("y")) for name, group in frames.items()}  # type: ignore[union-attr, arg-type]
    assert y["net"] > y["nn.Module: Net_0"] > y["aten::conv2d"] > y["aten::mkldnn_convolution"]
    # The heaviest callee is drawn leftmost.
    x = {name: float(group.find(f"{SVG}rect").get("x")) for name, group in frames.items()}  # type: ignore[union-attr, arg-type]
    assert x["aten::conv2d"] < x["aten::addmm"]
    root = ET.fromstring(svg)
    script = root.find(f"{SVG}script")
    assert script is not None and "function zoom" in (script.text or "")


def test_names_are_escaped_and_labels_truncated(tmp_path: Path) -> None:
    long_name = "aten::" + "x" * 400
    stacks = {("<built-in method conv2d of type object at 0x7f>", long_name): 10.0, ("a&b",): 10.0}
    path = write_flamegraph(tmp_path / "f.svg", stacks, title="t <&>")
    frames = _frames(path.read_text())
    assert "<built-in method conv2d of type object at 0x7f>" in frames and "a&b" in frames
    label = frames[long_name].find(f"{SVG}text").text or ""  # type: ignore[union-attr]
    assert label.endswith("..") and len(label) < len(long_name)


def test_empty_stacks_still_make_a_valid_svg() -> None:
    svg = render_flamegraph({}, title="nothing")
    assert _frames(svg) == {}
    assert "no samples were recorded" in svg
    ET.fromstring(svg)
