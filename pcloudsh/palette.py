"""The colour of a state word, the same everywhere (status tree, event lines, alerts).

As in the original shell: running is green, failed is red, anything on its
way somewhere (starting, recovering, fencing...) is yellow.
"""

from __future__ import annotations

GOOD = "bold green"
BAD = "bold red"
MOVING = "bold yellow"
QUIET = "dim"

_STYLES = {
    "running": GOOD,
    "started": GOOD,
    "active": GOOD,
    "ok": GOOD,
    "failed": BAD,
    "unrecoverable": BAD,
    "error": BAD,
    "starting": MOVING,
    "stopping": MOVING,
    "recovering": MOVING,
    "restarting": MOVING,
    "reloading": MOVING,
    "creating": MOVING,
    "connecting": MOVING,
    "fencing": MOVING,
    "pending": MOVING,
    "escalating": MOVING,
    "stopped": QUIET,
    "unknown": QUIET,
    "gone": QUIET,
    "exited": QUIET,
    "left": QUIET,
    "adopted": GOOD,
    "killed": BAD,
}


def state_style(state: object) -> str:
    """A rich style for the state ("" when it has none); ``dpe-running`` as ``running``."""
    word = str(state).lower()
    return _STYLES.get(word) or _STYLES.get(word.rpartition("-")[2], "")
