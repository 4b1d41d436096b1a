"""Charts as data for server-side SVG: bars laid out here, drawn by templates/console/_charts.html.

No JavaScript: every shape's position is computed in Python and the template only writes the elements.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Rect:
    """One bar segment."""

    x: float
    y: float
    w: float
    h: float
    css: str
    title: str


@dataclass(frozen=True)
class Label:
    """A text on the chart."""

    x: float
    y: float
    text: str
    anchor: str = "start"


@dataclass
class Chart:
    """An SVG chart: its view box, shapes, labels and a legend."""

    title: str
    width: int
    height: int
    rects: list[Rect] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    axis: tuple[float, float, float, float] = (0, 0, 0, 0)
    legend: list[tuple[str, str]] = field(default_factory=list)
    empty: bool = False


Segment = tuple[float, str, str]  # value, css class, title


def columns(
    title: str,
    cols: Sequence[tuple[str, Sequence[Segment]]],
    *,
    legend: Sequence[tuple[str, str]] = (),
    width: int = 640,
    height: int = 220,
    every: int = 1,
) -> Chart:
    """Vertical (stacked) bars, one column per label."""
    left, bottom, top = 36, 24, 12
    plot_h = height - bottom - top
    top_value = max((sum(v for v, _, _ in segs) for _, segs in cols), default=0)
    chart = Chart(title, width, height, legend=list(legend), empty=top_value == 0)
    scale = plot_h / top_value if top_value else 0
    step = (width - left - 8) / max(1, len(cols))
    bar_w = max(2.0, step * 0.7)
    for i, (label, segs) in enumerate(cols):
        x = left + i * step + (step - bar_w) / 2
        y = float(height - bottom)
        for value, css, tip in segs:
            h = value * scale
            if h > 0:
                y -= h
                chart.rects.append(Rect(round(x, 1), round(y, 1), round(bar_w, 1), round(h, 1), css, tip))
        if i % every == 0:
            chart.labels.append(Label(round(x + bar_w / 2, 1), height - 8, label, "middle"))
    chart.labels.append(Label(left - 4, top + 8, _fmt(top_value), "end"))
    chart.labels.append(Label(left - 4, height - bottom, "0", "end"))
    chart.axis = (left, height - bottom, width - 8, height - bottom)
    return chart


def rows(
    title: str,
    items: Sequence[tuple[str, Sequence[Segment], str]],
    *,
    legend: Sequence[tuple[str, str]] = (),
    width: int = 640,
    label_w: int = 150,
) -> Chart:
    """Horizontal (stacked) bars, one row per label, with the row's value written after the bar."""
    row_h, gap = 22, 8
    height = max(1, len(items)) * (row_h + gap) + gap
    top_value = max((sum(v for v, _, _ in segs) for _, segs, _ in items), default=0)
    chart = Chart(title, width, height, legend=list(legend), empty=top_value == 0)
    plot_w = width - label_w - 70
    scale = plot_w / top_value if top_value else 0
    for i, (label, segs, shown) in enumerate(items):
        y = gap + i * (row_h + gap)
        x = float(label_w)
        for value, css, tip in segs:
            w = value * scale
            if w > 0:
                chart.rects.append(Rect(round(x, 1), y, round(w, 1), row_h, css, tip))
                x += w
        chart.labels.append(Label(label_w - 6, y + row_h - 6, label, "end"))
        chart.labels.append(Label(round(x + 6, 1), y + row_h - 6, shown))
    chart.axis = (label_w, 0, label_w, height)
    return chart


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"
