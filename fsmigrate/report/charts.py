"""Charts for the HTML pages, laid out as numbers that the SVG templates draw
(templates/charts.html.j2). Pure: no markup here; the templates escape every label.

Two layouts: horizontal bars (one row per category, stacked segments: operations per kind
by status, documents merged per canonical ID by outcome, documents per ID kind) and a
time chart (one column or one line point per time bucket, with an optional threshold
line).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Optional

WIDTH = 760  # every chart's width in px (scaled down by CSS on narrow screens)
ROW = 22  # px per bar row
BAR = 16  # px bar thickness
CHAR_PX = 7.2  # average width of a 12px label character
MAX_LABEL_CHARS = 40  # longer labels are shortened (the full one is the tooltip)
VALUE_ROOM = 70  # px right of the longest bar for its number
TIME_HEIGHT = 220  # px of a time chart's plot area
MAX_X_TICKS = 8


@dataclass(frozen=True)
class Segment:
    key: str  # the legend key (also the CSS class `seg-<key>`)
    value: float
    x: float
    width: float


@dataclass(frozen=True)
class Bar:
    label: str  # as shown (shortened when long)
    title: str  # the tooltip: full label and every value
    value: float  # the bar's total
    y: float
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class Tick:
    pos: float
    label: str


@dataclass(frozen=True)
class BarChart:
    id: str
    title: str
    width: float
    height: float
    plot_x: float
    plot_width: float
    bars: tuple[Bar, ...]
    legend: tuple[tuple[str, str], ...]  # (key, label), in stacking order
    ticks: tuple[Tick, ...]
    omitted: int = 0  # categories beyond the limit, not drawn
    omitted_value: float = 0
    kind: str = "bars"


@dataclass(frozen=True)
class Column:
    x: float
    y: float
    width: float
    height: float
    value: float
    title: str


@dataclass(frozen=True)
class TimeChart:
    id: str
    title: str
    style: str  # "bars" or "line"
    width: float
    height: float
    plot_x: float
    plot_y: float
    plot_width: float
    plot_height: float
    columns: tuple[Column, ...]  # one per bucket, both styles (line: x at the centre)
    y_ticks: tuple[Tick, ...]
    x_ticks: tuple[Tick, ...]
    threshold_y: Optional[float] = None
    threshold_label: str = ""
    unit: str = ""
    kind: str = "time"

    @property
    def polyline(self) -> str:
        """The line style's points: the centre top of each column."""
        return " ".join(f"{c.x + c.width / 2:.1f},{c.y:.1f}" for c in self.columns)


def nice_scale(value: float) -> tuple[float, list[float]]:
    """The axis for values up to `value`: a top of 1, 2 or 5 x 10^k (at least 5, so
    that small counts get whole-number ticks) and its 5 or 6 evenly spaced ticks."""
    top = max(float(value), 5.0)
    power = 10.0 ** math.floor(math.log10(top))
    lead = next(n for n in (1, 2, 5, 10) if n * power >= top)
    top = lead * power
    step = top / (4 if lead == 2 else 5)
    return top, [step * i for i in range(round(top / step) + 1)]


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _shorten(label: str, chars: int = MAX_LABEL_CHARS) -> str:
    return label if len(label) <= chars else label[: chars - 1] + "\u2026"


def horizontal_bars(
    chart_id: str,
    title: str,
    rows: Sequence[tuple[str, Mapping[str, float]]],
    legend: Sequence[tuple[str, str]],
    *,
    limit: int = 40,
    unit: str = "",
) -> BarChart:
    """One bar per (label, {legend key: value}) row, in the given order, its segments
    stacked in legend order; rows past `limit` are counted in `omitted`."""
    shown, rest = list(rows[:limit]), rows[limit:]
    totals = [sum(values.get(key, 0) for key, _ in legend) for _, values in shown]
    top, tick_values = nice_scale(max(totals, default=0))
    label_px = (
        min(max((len(label) for label, _ in shown), default=4), MAX_LABEL_CHARS) * CHAR_PX + 12
    )
    plot_width = WIDTH - label_px - VALUE_ROOM
    bars = []
    for i, ((label, values), total) in enumerate(zip(shown, totals)):
        x, segments = label_px, []
        for key, _ in legend:
            value = values.get(key, 0)
            if value <= 0:
                continue
            width = plot_width * value / top
            segments.append(Segment(key, value, x, width))
            x += width
        parts = ", ".join(
            f"{_number(values.get(k, 0))} {name}" for k, name in legend if values.get(k, 0)
        )
        tooltip = f"{label}: {_number(total)}{' ' + unit if unit else ''}" + (
            f" ({parts})" if len(legend) > 1 and parts else ""
        )
        bars.append(Bar(_shorten(label), tooltip, total, 24 + i * ROW, tuple(segments)))
    ticks = tuple(Tick(label_px + plot_width * v / top, _number(v)) for v in tick_values)
    omitted_value = sum(sum(values.get(k, 0) for k, _ in legend) for _, values in rest)
    return BarChart(
        chart_id,
        title,
        WIDTH,
        24 + len(bars) * ROW + 30,
        label_px,
        plot_width,
        tuple(bars),
        tuple(legend),
        ticks,
        len(rest),
        omitted_value,
    )


def _x_ticks(
    starts: Sequence[dt.datetime], bucket: dt.timedelta, x0: float, column: float
) -> list[Tick]:
    hourly = bucket < dt.timedelta(days=1)
    fmt = "%m-%d %H:%M" if hourly else "%Y-%m-%d"
    every = 1
    for every in (1, 2, 3, 6, 12, 24, 48, 72, 168, 336, 720, 1440, 8760):
        if math.ceil(len(starts) / every) <= MAX_X_TICKS:
            break
    ticks = []
    for i, start in enumerate(starts):
        index = round(start.timestamp() / bucket.total_seconds())
        if index % every == 0:
            ticks.append(Tick(x0 + i * column, start.astimezone(dt.timezone.utc).strftime(fmt)))
    return ticks


def time_chart(
    chart_id: str,
    title: str,
    points: Sequence[tuple[dt.datetime, float]],
    bucket: dt.timedelta,
    *,
    style: str = "bars",
    threshold: Optional[float] = None,
    threshold_label: str = "",
    unit: str = "",
) -> TimeChart:
    """One column (bars) or line point per (bucket start, value), oldest first, with the
    threshold drawn as a horizontal line when given."""
    if style not in ("bars", "line"):
        raise ValueError(f"style must be 'bars' or 'line', not {style!r}")
    x0, y0, plot_height = 56.0, 28.0, float(TIME_HEIGHT)
    plot_width = WIDTH - x0 - 16
    values = [v for _, v in points]
    top, tick_values = nice_scale(
        max([*values, threshold if threshold is not None else 0], default=0)
        * (1.1 if threshold is not None else 1)
    )
    column = plot_width / max(len(points), 1)
    gap = min(1.0, column * 0.2) if style == "bars" else 0.0
    width_fmt = "%Y-%m-%d %H:%M UTC" if bucket < dt.timedelta(days=1) else "%Y-%m-%d"
    columns = []
    for i, (start, value) in enumerate(points):
        height = plot_height * max(value, 0) / top
        when = start.astimezone(dt.timezone.utc).strftime(width_fmt)
        columns.append(
            Column(
                x0 + i * column + gap / 2,
                y0 + plot_height - height,
                column - gap,
                height,
                value,
                f"{when}: {_number(value)}{' ' + unit if unit else ''}",
            )
        )
    y_ticks = tuple(Tick(y0 + plot_height - plot_height * v / top, _number(v)) for v in tick_values)
    threshold_y = None if threshold is None else y0 + plot_height - plot_height * threshold / top
    return TimeChart(
        chart_id,
        title,
        style,
        WIDTH,
        y0 + plot_height + 40,
        x0,
        y0,
        plot_width,
        plot_height,
        tuple(columns),
        y_ticks,
        tuple(_x_ticks([s for s, _ in points], bucket, x0, column)),
        threshold_y,
        threshold_label,
        unit,
    )
