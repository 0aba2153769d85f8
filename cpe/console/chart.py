"""The recovery chart's geometry: one mark per recovery over the last 24 hours
(x: when the failure happened; y: seconds until running again), drawn by the
template as SVG.  No script and no library: numbers in, coordinates out."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from cpe.console.summary import DAY, Recovery

WIDTH, HEIGHT = 720.0, 220.0
LEFT, RIGHT, TOP, BOTTOM = 56.0, 12.0, 12.0, 28.0
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
HOUR_TICKS = 6  # a label every 4 hours


@dataclass(frozen=True)
class Mark:
    x: float
    y: float
    label: str  # the tooltip (<title>): escaped by the template like everything else


@dataclass(frozen=True)
class Tick:
    at: float  # x or y in the drawing
    label: str


@dataclass(frozen=True)
class Chart:
    marks: list[Mark]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    width: float = WIDTH
    height: float = HEIGHT
    left: float = LEFT
    top: float = TOP
    bottom: float = TOP + PLOT_H
    right: float = LEFT + PLOT_W


def recovery_chart(found: list[Recovery], now: float) -> Chart:
    start = now - DAY
    recent = [r for r in found if r.failed_at >= start]
    top = _nice_ceiling(max((r.seconds for r in recent), default=1.0))
    marks = [
        Mark(
            x=round(LEFT + (r.failed_at - start) / DAY * PLOT_W, 1),
            y=round(TOP + PLOT_H - min(r.seconds / top, 1.0) * PLOT_H, 1),
            label=f"{r.subject}: failed {_clock(r.failed_at)}, running {r.seconds:.2f} s later",
        )
        for r in recent
    ]
    x_ticks = [
        Tick(round(LEFT + i / HOUR_TICKS * PLOT_W, 1), _clock(start + i / HOUR_TICKS * DAY, True))
        for i in range(HOUR_TICKS + 1)
    ]
    y_ticks = [Tick(round(TOP + PLOT_H - f * PLOT_H, 1), f"{top * f:g} s") for f in (0, 0.5, 1)]
    return Chart(marks, x_ticks, y_ticks)


def _nice_ceiling(value: float) -> float:
    """1, 2 or 5 times a power of ten, at least ``value`` (a readable axis)."""
    value = max(value, 0.1)
    power = 10.0 ** math.floor(math.log10(value))
    return float(next(m * power for m in (1, 2, 5, 10) if m * power >= value))


def _clock(when: float, short: bool = False) -> str:
    return time.strftime("%H:%M" if short else "%H:%M:%S UTC", time.gmtime(when))
