"""An event as one line for people, in the original shell's words.

``2024-05-01 12:00:03  resource [www] in assembly [web] in deployable [shop]
is FAILED: monitor returned 7 (not running)`` -- the state word coloured.
"""

from __future__ import annotations

from typing import Any

from pcloudsh.output import Styled
from pcloudsh.palette import state_style
from pcloudsh.timetext import format_time


def event_line(event: dict[str, Any]) -> Styled:
    state = str(event.get("state") or "unknown")
    reason = event.get("reason")
    parts = [
        (f"{format_time(event.get('time'))}  ", ""),
        (f"{subject(event)} is ", ""),
        (state.upper(), state_style(state)),
    ]
    if reason:
        parts.append((f": {reason}", ""))
    return Styled(parts)


def subject(event: dict[str, Any]) -> str:
    """``resource [r] in assembly [a] in deployable [d]`` (or a shorter part of it)."""
    words = []
    for kind in ("resource", "assembly", "deployable"):
        name = event.get(kind)
        if name:
            words.append(f"{kind} [{name}]")
    return " in ".join(words) or "pacemaker-cloud"
