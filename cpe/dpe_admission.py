"""Turns to start: how many deployables cped lets start at once.

Starting is the costly part of a DPE's life: a new process, an SSH key exchange
per instance, the first probe, start and monitor of every resource.  Hundreds
at once on a small host starve each other (heartbeats and health commands time
out, recoveries follow and keep the load up), so cped lets at most
``starts_at_once`` deployables be starting at any moment, as Pacemaker's
``batch-limit`` bounds the actions in flight: the others are ``QUEUED`` and get
their turn in the order they asked.

A turn is taken when a DPE is spawned and given back when its deployable has
settled (an event of the deployable itself says ``running``, ``failed`` or
``stopped``), when its DPE exits, or after ``start_turn`` seconds at most, so a
deployable that cannot settle does not hold the queue.  Adopting a live DPE
takes no turn: it costs nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from foundation.events import Event

SETTLED_STATES = frozenset({"running", "failed", "stopped"})


@dataclass
class Turn:
    since: float  # monotonic time it was taken
    after_id: int  # events after this one tell how the start went
    looked: float  # monotonic time its events were last read
    woken: bool = False  # a wake-up came: read its events at the next tick


@dataclass
class Turns:
    turns: dict[str, Turn] = field(default_factory=dict)

    def __contains__(self, name: str) -> bool:
        return name in self.turns

    def __len__(self) -> int:
        return len(self.turns)

    def has_room(self, limit: int) -> bool:
        return len(self.turns) < limit

    def take(self, name: str, now: float, after_id: int) -> None:
        self.turns[name] = Turn(now, after_id, now)

    def give_back(self, name: str) -> bool:
        """True if ``name`` held a turn."""
        return self.turns.pop(name, None) is not None

    def woken(self, name: str) -> bool:
        """A wake-up about ``name``: True if it holds a turn (look at it soon)."""
        turn = self.turns.get(name)
        if turn is not None:
            turn.woken = True
        return turn is not None

    def due(self, now: float, every: float) -> list[str]:
        """The turns whose events should be read now: woken, or not read for ``every``."""
        return [n for n, t in self.turns.items() if t.woken or now - t.looked >= every]

    def overdue(self, now: float, longest: float) -> list[str]:
        return [n for n, t in self.turns.items() if now - t.since >= longest]

    def read(self, name: str, events: Iterable[Event], now: float) -> bool:
        """Its new events were read: True if the deployable has settled."""
        turn = self.turns[name]
        turn.looked, turn.woken = now, False
        settled = False
        for event in events:
            turn.after_id = max(turn.after_id, event.id or 0)
            own = event.assembly is None and event.resource is None
            settled = settled or (own and event.state in SETTLED_STATES)
        return settled

    def next_look(self, now: float, every: float, longest: float) -> float | None:
        """Seconds until a turn should be looked at again (None: no turns)."""
        if not self.turns:
            return None
        return min(min(t.looked + every, t.since + longest) for t in self.turns.values()) - now
