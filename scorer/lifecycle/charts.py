"""Inline SVG charts: grouped bars and lines, drawn by hand.

Why not plotly: its self-contained output embeds ~3.5 MB of JavaScript and
draws only once a browser runs it; these reports need four small charts
that must open offline, diff in review and be checked by a test without a
JavaScript engine. A few hundred bytes of SVG per chart does that, with no
dependency.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

WIDTH, HEIGHT = 560, 280
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 36, 48
PALETTE = ("#2563eb", "#ea580c", "#16a34a", "#9333ea", "#dc2626", "#0891b2")


def _frame(title: str, y_max: float, y_format: str) -> list[str]:
    plot_h = HEIGHT - TOP - BOTTOM
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{WIDTH}" '
        f'height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}">',
        f'<text x="{LEFT}" y="20" font-size="14" font-weight="bold">{escape(title)}</text>',
    ]
    for step in range(5):
        value = y_max * step / 4
        y = TOP + plot_h - plot_h * step / 4
        out.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>'
        )
        label = format(value, y_format)
        out.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{label}</text>'
        )
    return out


def _legend(labels: Sequence[str]) -> list[str]:
    """Swatches and labels under the plot, wrapped to a second row when they do not fit."""
    placed: list[tuple[int, int, int, str]] = []  # (row, x, colour index, label)
    row, x = 0, LEFT
    for index, label in enumerate(labels):
        width = 24 + 7 * len(label)
        if x > LEFT and x + width > WIDTH - RIGHT:
            row, x = row + 1, LEFT
        placed.append((row, x, index, label))
        x += width
    first = HEIGHT - 16 - 14 * row
    out = []
    for line, left, index, label in placed:
        colour = PALETTE[index % len(PALETTE)]
        y = first + 14 * line
        out.append(
            f'<rect x="{left}" y="{y}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{left + 14}" y="{y + 9}" font-size="11">{escape(label)}</text>'
        )
    return out


def _nice_max(values: Sequence[float]) -> float:
    """The smallest of 1, 2, 2.5, 5, 10 times a power of ten that holds every value."""
    top = max([*values, 0.0])
    if top <= 0:
        return 1.0
    scale = 10.0 ** math.floor(math.log10(top))
    return next(nice * scale for nice in (1, 2, 2.5, 5, 10) if nice * scale >= top)


def bar_chart(
    title: str,
    groups: Sequence[str],
    series: Mapping[str, Sequence[float]],
    y_format: str = ".2f",
) -> str:
    """Grouped vertical bars: one group per category, one bar per series."""
    y_max = _nice_max([v for values in series.values() for v in values])
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    out = _frame(title, y_max, y_format)
    slot = plot_w / max(len(groups), 1)
    bar = slot * 0.8 / max(len(series), 1)
    for g, group in enumerate(groups):
        x0 = LEFT + g * slot + slot * 0.1
        for s, (label, values) in enumerate(series.items()):
            value = values[g] if g < len(values) else 0.0
            height = plot_h * value / y_max
            x = x0 + s * bar
            out.append(
                f'<rect class="bar" x="{x:.1f}" y="{TOP + plot_h - height:.1f}" '
                f'width="{bar - 2:.1f}" height="{height:.1f}" '
                f'fill="{PALETTE[s % len(PALETTE)]}"><title>{escape(label)} {escape(group)}: '
                f"{format(value, y_format)}</title></rect>"
            )
        out.append(
            f'<text x="{x0 + slot * 0.4:.1f}" y="{TOP + plot_h + 16}" font-size="11" '
            f'text-anchor="middle">{escape(group)}</text>'
        )
    return "\n".join([*out, *_legend(list(series)), "</svg>"])


def line_chart(
    title: str,
    xs: Sequence[float],
    series: Mapping[str, Sequence[float | None]],
    y_max: float | None = None,
    y_format: str = ".2f",
    x_label: str = "",
) -> str:
    """Lines over a shared x axis; None values leave a gap."""
    top = y_max if y_max is not None else _nice_max([v or 0.0 for s in series.values() for v in s])
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    out = _frame(title, top, y_format)
    low, high = (min(xs), max(xs)) if xs else (0.0, 1.0)
    span = (high - low) or 1.0

    def x_of(x: float) -> float:
        return LEFT + plot_w * (x - low) / span

    for x in xs[:: max(1, len(xs) // 8)]:
        out.append(
            f'<text x="{x_of(x):.1f}" y="{TOP + plot_h + 16}" font-size="11" '
            f'text-anchor="middle">{x:g}</text>'
        )
    if x_label:
        out.append(
            f'<text x="{WIDTH - RIGHT}" y="{TOP + plot_h + 30}" font-size="11" '
            f'text-anchor="end">{escape(x_label)}</text>'
        )
    for s, (label, values) in enumerate(series.items()):
        colour = PALETTE[s % len(PALETTE)]
        points = [
            (x_of(x), TOP + plot_h - plot_h * min(v, top) / top)
            for x, v in zip(xs, values, strict=False)
            if v is not None
        ]
        if points:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            out.append(
                f'<polyline class="line" fill="none" stroke="{colour}" stroke-width="2" '
                f'points="{path}"><title>{escape(label)}</title></polyline>'
            )
    return "\n".join([*out, *_legend(list(series)), "</svg>"])
