"""The metrics page's charts, as inline SVG drawn here: axes with their values, dates along the
bottom, and each day's figures in a <title> (the browser's tooltip with JavaScript off;
hud/static/hud/hud.js shows it at once on hover). No inline style (the CSP): classes only.

Volume charts of every repo share one scale (the busiest day of any repo), so the charts
compare at a glance; pass rates are 0-100 % everywhere; a repo's time chart has its own scale,
labelled in durations (a three-hour build would flatten a five-minute one).
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from html import escape  # not Django's: its lazy-string wrapper cost more than the work

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from hud.reports import DailyPoint, DailyTimes, Window

WIDTH, HEIGHT = 640, 170
LEFT, RIGHT, TOP, BOTTOM = 52, 40, 10, 24
SERIES_CLASSES = 8  # .s0 ... .s7 in hud.css, then again


@dataclass(frozen=True)
class Frame:
    """The plot area of one chart over the window's dates."""

    first: date
    dates: int  # a window of N days that starts mid-day touches N + 1 dates

    @classmethod
    def of(cls, window: Window) -> "Frame":
        first = window.start.date()
        return cls(first, (window.end.date() - first).days + 1)

    @property
    def slot(self) -> float:
        return (WIDTH - LEFT - RIGHT) / max(self.dates, 1)

    def x(self, day: date) -> float:
        return round(LEFT + ((day - self.first).days + 0.5) * self.slot, 1)

    @staticmethod
    def y(share: float) -> float:
        """0 at the bottom of the plot, 1 at its top."""
        return round(TOP + (1 - min(max(share, 0.0), 1.0)) * (HEIGHT - TOP - BOTTOM), 1)

    def dates_axis(self) -> str:
        step = max(1, math.ceil(self.dates / 6))
        labels = []
        for n in range(0, self.dates, step):
            day = self.first + timedelta(days=n)
            labels.append(
                f'<text class="tick" x="{self.x(day)}" y="{HEIGHT - 6}" '
                f'text-anchor="middle">{day:%b %d}</text>'
            )
        base = self.y(0)
        return (
            f'<line class="axis" x1="{LEFT}" y1="{base}" x2="{WIDTH - RIGHT}" y2="{base}"></line>'
            + "".join(labels)
        )


def nice_ceiling(value: float) -> float:
    """1, 2 or 5 times a power of ten, at least `value` (an axis' top)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value)


def _value_axis(top: float, label: Callable[[float], str], *, right: bool = False) -> str:
    """Three labelled levels (0, half, top) with grid lines, on the left or the right."""
    x, anchor = (WIDTH - RIGHT + 4, "start") if right else (LEFT - 4, "end")
    parts = []
    for share in (0.0, 0.5, 1.0):
        y = Frame.y(share)
        if not right:
            parts.append(
                f'<line class="grid" x1="{LEFT}" y1="{y}" x2="{WIDTH - RIGHT}" y2="{y}"></line>'
            )
        parts.append(
            f'<text class="tick" x="{x}" y="{y + 4}" text-anchor="{anchor}">'
            f"{escape(label(top * share))}</text>"
        )
    return "".join(parts)


def _svg(css: str, label: str, body: str) -> SafeString:
    return format_html(
        '<svg class="{}" viewBox="0 0 {} {}" role="img" aria-label="{}">{}</svg>',
        css,
        WIDTH,
        HEIGHT,
        label,
        mark_safe(body),  # noqa: S308 (built here from numbers and escaped text)
    )


def _percent(value: float) -> str:
    return f"{value:.0f}%"


def _count(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def volume_chart(points: Sequence[DailyPoint], window: Window, peak: int) -> SafeString:
    """Jobs per day (bars; failed or timed out in red) on the shared scale `peak`, and the
    day's pass rate (line, right axis)."""
    if not points:
        return mark_safe('<p class="muted">No results in this window.</p>')
    frame, top = Frame.of(window), nice_ceiling(peak)
    width = round(frame.slot * 0.7, 1)
    bars, line, labels = [], [], []
    for point in points:
        counts, x = point.counts, frame.x(point.day)
        red = counts.failures + counts.timed_out
        total_y, red_y, base = frame.y(counts.total / top), frame.y(red / top), frame.y(0)
        rate = counts.pass_rate
        running = f" ({counts.in_progress} running)" if counts.in_progress else ""
        tip = (
            f"{point.day:%b %d}: {counts.total} jobs{running}, {counts.failures} failed, "
            f"{counts.timed_out} timed out"
            + (f", {rate:.0%} passed" if rate is not None else ", none completed")
        )
        labels.append(tip)
        bars.append(
            f'<g class="day"><title>{escape(tip)}</title>'
            f'<rect class="hit" x="{x - frame.slot / 2:.1f}" y="{TOP}" '
            f'width="{frame.slot:.1f}" height="{HEIGHT - TOP - BOTTOM}"></rect>'
            f'<rect class="jobs" x="{x - width / 2:.1f}" y="{total_y}" width="{width}" '
            f'height="{round(base - total_y, 1)}"></rect>'
            f'<rect class="red" x="{x - width / 2:.1f}" y="{red_y}" width="{width}" '
            f'height="{round(base - red_y, 1)}"></rect></g>'
        )
        if rate is not None:
            line.append(f"{x},{frame.y(rate)}")
    body = (
        _value_axis(top, _count)
        + _value_axis(100, _percent, right=True)
        + frame.dates_axis()
        + "".join(bars)
        + f'<polyline class="passrate" points="{" ".join(line)}"></polyline>'
    )
    return _svg("chart volume-chart", "; ".join(labels), body)


def passrate_chart(
    series: Sequence[tuple[str, Sequence[DailyPoint]]], window: Window
) -> SafeString:
    """Every repo's daily pass rate on one 0-100 % scale, a line and a class each."""
    frame = Frame.of(window)
    lines, labels = [], []
    for n, (repo, points) in enumerate(series):
        css = f"s{n % SERIES_CLASSES}"
        dots, coords = [], []
        for point in points:
            rate = point.counts.pass_rate
            if rate is None:
                continue
            x, y = frame.x(point.day), frame.y(rate)
            coords.append(f"{x},{y}")
            tip = f"{repo} · {point.day:%b %d}: {rate:.0%} passed of {point.counts.completed}"
            dots.append(f'<circle cx="{x}" cy="{y}" r="3.5"><title>{escape(tip)}</title></circle>')
        if coords:
            labels.append(repo)
            lines.append(
                f'<g class="series {css}"><polyline points="{" ".join(coords)}"></polyline>'
                f"{''.join(dots)}</g>"
            )
    if not lines:
        return mark_safe('<p class="muted">No completed jobs in this window.</p>')
    body = _value_axis(100, _percent) + frame.dates_axis() + "".join(lines)
    return _svg("chart passrate-chart", "Daily pass rate of " + ", ".join(labels), body)


TIMES = (  # (field, class, words)
    ("p50_execution", "exec p50", "execution p50"),
    ("p90_execution", "exec p90", "execution p90"),
    ("p50_queue", "queue p50", "queue p50"),
    ("p90_queue", "queue p90", "queue p90"),
)


def times_chart(
    times: Sequence[DailyTimes], window: Window, duration: Callable[[float], str]
) -> SafeString:
    """Queue and execution time per day, p50 (solid) and p90 (dashed), on the repo's scale."""
    measured = [
        value
        for day in times
        for field, _, _ in TIMES
        if (value := getattr(day, field)) is not None
    ]
    if not measured:
        return mark_safe('<p class="muted">No measured times in this window.</p>')
    frame = Frame.of(window)
    top = (
        nice_ceiling(max(measured) / 60) * 60
        if max(measured) >= 60
        else nice_ceiling(max(measured))
    )
    # Each value said once: its dot's tip and the chart's label both show it.
    said = [
        {
            field: duration(value)
            for field, _, _ in TIMES
            if (value := getattr(day, field)) is not None
        }
        for day in times
    ]
    lines = []
    for field, css, words in TIMES:
        coords, dots = [], []
        for day, spelled in zip(times, said, strict=True):
            value = getattr(day, field)
            if value is None:
                continue
            x, y = frame.x(day.day), frame.y(value / top)
            coords.append(f"{x},{y}")
            tip = escape(f"{day.day:%b %d}: {words} {spelled[field]}")
            dots.append(f'<circle cx="{x}" cy="{y}" r="3"><title>{tip}</title></circle>')
        lines.append(
            f'<g class="times {css}"><polyline points="{" ".join(coords)}"></polyline>'
            f"{''.join(dots)}</g>"
        )
    label = "; ".join(
        f"{day.day:%b %d}: "
        + ", ".join(f"{words} {spelled[field]}" for field, _, words in TIMES if field in spelled)
        for day, spelled in zip(times, said, strict=True)
    )
    body = _value_axis(top, duration) + frame.dates_axis() + "".join(lines)
    return _svg("chart times-chart", label, body)
