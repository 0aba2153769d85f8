"""Times and durations as people read them."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any


def format_time(value: Any) -> str:
    """``2024-05-01 12:00:03`` (local time) for epoch seconds; anything else as it is."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return str(value)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))


def duration(seconds: float) -> str:
    """``42 s``, ``5 min 3 s``, ``2 h 10 min``, ``3 d 4 h``."""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def seconds_text(value: float) -> str:
    """A configured duration: ``60 s``, ``0.5 s``, ``365 d`` (whole days), never ``3.1e+07 s``."""
    if value >= 86400 and value % 86400 == 0:
        return f"{int(value // 86400)} d"
    if float(value).is_integer():
        return f"{int(value)} s"
    if abs(value) >= 0.001:
        return f"{round(value, 3):f}".rstrip("0") + " s"
    # below a millisecond rounding would print 0: the shortest exact digits instead
    return format(Decimal(repr(float(value))), "f") + " s"
