"""What the console's pages show, computed from the status and the event log:
a deployable's overview row, the timeline's filter, and its recoveries
(failure → running again, per assembly and resource).  Pure functions: the
pages' handlers read the store, these shape what they read."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from foundation.errors import InvalidInput
from foundation.events import Event
from foundation.spelling import NAME_RE

HOUR = 3600.0
DAY = 24 * HOUR
LEVELS = ("deployable", "assembly", "resource")
FAILED_STATES = frozenset({"failed", "unrecoverable"})
ERROR_STATES = FAILED_STATES | {"fencing", "dpe-killed", "dpe-died"}
WARNING_STATES = frozenset({"recovering", "stopping", "starting", "creating", "connecting"})


def overview_row(status: Mapping[str, Any], recent: Iterable[Event], now: float) -> dict[str, Any]:
    """One line of the overview: states, assemblies running/total, failures, DPE and lease."""
    assemblies = status["assemblies"]
    dpe = status["dpe"]
    return {
        "name": status["name"],
        "state": status["state"],
        "desired": status["desired"],
        "running": sum(1 for a in assemblies if a["state"] == "running"),
        "total": len(assemblies),
        "failures_last_hour": count_failures(recent, now - HOUR),
        "dpe": dpe_health(dpe),
        "lease": lease_health(dpe),
    }


def count_failures(events: Iterable[Event], since: float) -> int:
    return sum(1 for e in events if e.time >= since and e.state in FAILED_STATES)


def dpe_health(dpe: Mapping[str, Any]) -> str:
    if dpe.get("alive"):
        return f"running (pid {dpe.get('pid')})"
    return "not running"


def lease_health(dpe: Mapping[str, Any]) -> str:
    if dpe.get("lease_holder") is None:
        return "none"
    left = dpe.get("lease_expires_in")
    if left is None:
        return f"expired (epoch {dpe.get('lease_epoch')})"
    return f"held, epoch {dpe.get('lease_epoch')}, {left:.1f} s left"


def level_of(event: Mapping[str, Any]) -> str:
    if event.get("resource"):
        return "resource"
    return "assembly" if event.get("assembly") else "deployable"


def severity_of(state: str) -> str:
    """How the timeline colours an event (errors, changes in progress, the rest)."""
    if state in ERROR_STATES:
        return "error"
    return "warning" if state in WARNING_STATES else "info"


@dataclass(frozen=True)
class TimelineFilter:
    level: str = ""
    assembly: str = ""
    resource: str = ""

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> TimelineFilter:
        """The page's filter form; a value it cannot send is refused by its field."""
        level = query.get("level", "")
        if level and level not in LEVELS:
            raise InvalidInput(f"level: one of {', '.join(LEVELS)}, not {level!r}")
        return cls(level, _name_in(query, "assembly"), _name_in(query, "resource"))

    def keeps(self, event: Mapping[str, Any]) -> bool:
        if self.level and level_of(event) != self.level:
            return False
        if self.assembly and event.get("assembly") != self.assembly:
            return False
        return not (self.resource and event.get("resource") != self.resource)


def _name_in(query: Mapping[str, str], field: str) -> str:
    value = query.get(field, "").strip()
    if value and not NAME_RE.match(value):
        raise InvalidInput(f"{field}: not a name: {value!r}")
    return value


@dataclass(frozen=True)
class Recovery:
    subject: str  # "assembly" or "assembly/resource"
    failed_at: float
    running_at: float

    @property
    def seconds(self) -> float:
        return self.running_at - self.failed_at


def recoveries(events: Iterable[Event]) -> list[Recovery]:
    """Each failure of an assembly or resource and the time it ran again, in order.

    A failure opens a recovery for its subject (a second failure before it
    runs again belongs to the same one); the next ``running`` closes it.
    """
    open_since: dict[str, float] = {}
    found = []
    for event in events:
        if event.assembly is None:
            continue
        subject = "/".join(p for p in (event.assembly, event.resource) if p)
        if event.state in FAILED_STATES:
            open_since.setdefault(subject, event.time)
        elif event.state == "running" and subject in open_since:
            found.append(Recovery(subject, open_since.pop(subject), event.time))
    return found
