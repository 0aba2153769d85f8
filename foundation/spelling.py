"""How the document spells its values: names, durations, scores, failure counts
and references to another assembly.

Each parser takes what a JSON document, a command line or a configuration file
may hold and returns the value the engine uses, or raises ValueError whose text
says what is wrong (``not a duration: '10x'``).  The schema
(``foundation.schema``), the shell and the configuration share them.  Standard
library only.
"""

from __future__ import annotations

import re
import unicodedata

from foundation.domain import INFINITY, Reference
from foundation.problems import Problems, kind

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
NAME_PATTERN = "^" + NAME_RE.pattern.removesuffix(r"\Z") + "$"  # as JSON Schema writes it
PARAM_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")
REFERENCE_RE = re.compile(r"@?([^:]+):(ipaddress|hostname)")
DISABLED_WORDS = ("INFINITY", "-INFINITY", "-1", "")
MAX_PARAMETER = 4096  # characters of one parameter value
MAX_DESCRIPTION = 500  # characters of a description: one line of a listing
# Sane upper bounds, said in the refusal: past them a value is a typing slip, and
# a huge one would overflow the store's integers or the event loop's timers.
MAX_DURATION = 365 * 86400.0  # any duration: a year
MAX_OPERATION = 86400.0  # a monitor interval or an operation timeout: a day
# ... and at least this: an agent's run takes milliseconds (a shell starting),
# so a shorter one can only time out or keep the guest's CPU busy with monitors
MIN_OPERATION = 0.1
MAX_FAILURES = 1_000_000  # Pacemaker's INFINITY: a count beyond it never happens

_DURATION_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|m|min|h|hr|d)?\s*\Z")
_UNIT_SECONDS = {None: 1.0, "s": 1.0, "sec": 1.0, "ms": 0.001, "m": 60.0, "min": 60.0}
_UNIT_SECONDS |= {"h": 3600.0, "hr": 3600.0, "d": 86400.0}


def name_problem(value: object) -> str | None:
    """What is wrong with a name (it becomes a file name, a unit name, an SSH argument)."""
    if not isinstance(value, str):
        return f"must be a string, not {kind(value)}"
    if not NAME_RE.match(value):
        return f"not a valid name: {value!r} (allowed: [A-Za-z0-9][A-Za-z0-9_.-]{{0,62}})"
    return None


def check_name(value: object, path: str, problems: Problems) -> str:
    problem = name_problem(value)
    if problem is not None:
        problems.add(path, problem)
    return value if isinstance(value, str) else ""


def validate_name(value: str, what: str = "name") -> str:
    """Check one name given on a command line or in a URL."""
    problems = Problems()
    check_name(value, what, problems)
    problems.raise_if_any(f"invalid {what}")
    return value


def check_description(value: object) -> str:
    """Free text shown in tables: one line of printable text, at most MAX_DESCRIPTION
    characters (a newline would split a row, an escape sequence would drive the terminal)."""
    if not isinstance(value, str):
        raise ValueError(f"not a text: {value!r}")
    control = next((char for char in value if _unprintable(char)), None)
    if control is not None:
        raise ValueError(f"control character {control!r} not allowed (one line of text)")
    if len(value) > MAX_DESCRIPTION:
        raise ValueError(f"too long: {len(value)} characters (at most {MAX_DESCRIPTION})")
    return value


def _unprintable(char: str) -> bool:
    """A control, format (a direction override, a zero-width one), private, unassigned
    or line-separating character; every kind of space is text (a no-break space too)."""
    category = unicodedata.category(char)
    return category[0] == "C" or category in ("Zl", "Zp")


def parse_duration(value: object, maximum: float = MAX_DURATION) -> float:
    """Seconds from ``10``, ``10s``, ``500ms``, ``2m``, ``1h`` or ``7d``, at most
    ``maximum``; ValueError otherwise."""
    return _at_most(_seconds(value), value, maximum)


def _seconds(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        if value != value:  # NaN: neither negative nor positive
            raise ValueError(f"not a duration: {value!r} (not a number)")
        if value < 0:
            raise ValueError(f"not a duration: {value!r} (negative)")
        return float(value)
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match:
            return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    raise ValueError(f"not a duration: {value!r}")


def _at_most(seconds: float, value: object, maximum: float) -> float:
    if seconds > maximum:
        raise ValueError(f"too long: {value!r} (at most {duration_text(maximum)})")
    return seconds


def duration_text(seconds: float) -> str:
    """``1 day``, ``365 days``, ``90 s``: a bound as people say it."""
    days = seconds / 86400
    if days >= 1 and days.is_integer():
        return "1 day" if days == 1 else f"{days:g} days"
    return f"{seconds:g} s"


def parse_positive_duration(value: object, maximum: float = MAX_DURATION) -> float:
    seconds = parse_duration(value, maximum)
    if seconds <= 0:
        raise ValueError(f"must be greater than zero: {value!r}")
    return seconds


def parse_operation_duration(value: object) -> float:
    """A monitor interval or an operation timeout: at least MIN_OPERATION, at most a day."""
    seconds = parse_positive_duration(value, MAX_OPERATION)
    if seconds < MIN_OPERATION:
        raise ValueError(f"too short: {value!r} (at least {MIN_OPERATION * 1000:g} ms)")
    return seconds


def duration_setting(value: object, default: float, path: str, problems: Problems) -> float:
    """An optional positive duration (a driver setting, say); the default when unset."""
    if value is None:
        return default
    try:
        return parse_positive_duration(value)
    except ValueError as error:
        problems.add(path, str(error))
        return default


def parse_score(value: object) -> int:
    """``100``, ``-50``, ``INFINITY``, ``+INFINITY``, ``-INFINITY`` (clamped); ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"not a score: {value!r}")
    if isinstance(value, int):
        return max(-INFINITY, min(INFINITY, value))
    if isinstance(value, str):
        text = value.strip().upper()
        if text in ("INFINITY", "+INFINITY", "INF", "+INF"):
            return INFINITY
        if text in ("-INFINITY", "-INF"):
            return -INFINITY
        if re.fullmatch(r"[+-]?\d+", text):
            return parse_score(int(text))
    raise ValueError(f"not a score: {value!r} (a whole number, INFINITY or -INFINITY)")


def parse_escalation_count(value: object) -> int:
    """A failure count, at most MAX_FAILURES; 0 (as Pacemaker's migration-threshold=0),
    INFINITY, -1 or empty disable escalation (0)."""
    if value is None or (isinstance(value, str) and value.strip().upper() in DISABLED_WORDS):
        return 0
    if isinstance(value, bool):
        raise ValueError(f"not a number of failures: {value!r}")
    if isinstance(value, int) or (isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip())):
        count = int(value)
        if count == -1:
            return 0
        if count < 0:
            raise ValueError(f"not a number of failures: {value!r}")
        if count > MAX_FAILURES:
            raise ValueError(
                f"too many failures: {value!r} (at most {MAX_FAILURES}; INFINITY or -1 turns"
                " escalation off)"
            )
        return count
    raise ValueError(f"not a number of failures: {value!r}")


def parse_escalation_period(value: object) -> float:
    if value is None or (isinstance(value, str) and value.strip().upper() in DISABLED_WORDS):
        return 0.0
    if isinstance(value, int | float) and not isinstance(value, bool) and value == -1:
        return 0.0
    return parse_duration(value)


def parse_reference(text: str) -> Reference | None:
    """``ASSEMBLY:ipaddress`` (or with a leading ``@``) as a Reference, else None."""
    match = REFERENCE_RE.fullmatch(text)
    return Reference(match.group(1), match.group(2)) if match else None
