"""The states of what a DPE supervises, the changes allowed, and their events.

Each supervised object (the deployable, each assembly, each resource) holds a
``StateCell``: setting the state it already has does nothing; every real change
is checked against the object's transition table and emitted as an
``foundation.events.Event`` with a reason a person can act on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

from foundation.events import Event


class AssemblyState(StrEnum):
    UNKNOWN = "unknown"  # not looked at yet (engine starting)
    CREATING = "creating"  # the driver is creating the instance
    CONNECTING = "connecting"  # instance exists; SSH not yet up
    RUNNING = "running"  # connected, heartbeat answered
    FAILED = "failed"  # lost: to be fenced
    FENCING = "fencing"  # the instance is being destroyed
    STOPPING = "stopping"  # the instance is being destroyed: the deployable stops
    STOPPED = "stopped"  # no instance


class ResourceState(StrEnum):
    UNKNOWN = "unknown"  # not probed on the current instance
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    FAILED = "failed"  # an operation failed softly: stop and start again
    UNRECOVERABLE = "unrecoverable"  # a hard agent error: left alone


class DeployableState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    RECOVERING = "recovering"
    FAILED = "failed"  # escalation exhausted: no more recovery until started again
    STOPPING = "stopping"
    STOPPED = "stopped"


_A = AssemblyState
_R = ResourceState
_D = DeployableState

ASSEMBLY_TRANSITIONS: Mapping[AssemblyState, frozenset[AssemblyState]] = {
    _A.UNKNOWN: frozenset(
        {_A.CREATING, _A.CONNECTING, _A.FAILED, _A.FENCING, _A.STOPPING, _A.STOPPED}
    ),
    _A.STOPPED: frozenset({_A.CREATING, _A.FENCING, _A.STOPPING}),
    _A.CREATING: frozenset({_A.CONNECTING, _A.FAILED, _A.FENCING, _A.STOPPING}),
    _A.CONNECTING: frozenset({_A.RUNNING, _A.FAILED, _A.FENCING, _A.STOPPING}),
    _A.RUNNING: frozenset({_A.FAILED, _A.FENCING, _A.STOPPING}),
    _A.FAILED: frozenset({_A.FENCING, _A.STOPPING}),
    _A.FENCING: frozenset({_A.STOPPED, _A.FAILED}),
    _A.STOPPING: frozenset({_A.STOPPED, _A.FAILED}),
}

RESOURCE_TRANSITIONS: Mapping[ResourceState, frozenset[ResourceState]] = {
    # UNKNOWN is reachable from everywhere but UNRECOVERABLE's stickiness is
    # decided by the engine (a fence forgets the op history, not a hard error).
    _R.UNKNOWN: frozenset({_R.RUNNING, _R.STOPPED, _R.FAILED, _R.UNRECOVERABLE}),
    _R.STOPPED: frozenset({_R.STARTING, _R.UNKNOWN}),
    _R.STARTING: frozenset({_R.RUNNING, _R.FAILED, _R.UNRECOVERABLE, _R.UNKNOWN}),
    _R.RUNNING: frozenset({_R.STOPPING, _R.FAILED, _R.UNKNOWN}),
    _R.STOPPING: frozenset({_R.STOPPED, _R.FAILED, _R.UNRECOVERABLE, _R.UNKNOWN}),
    _R.FAILED: frozenset({_R.STOPPING, _R.UNKNOWN}),
    _R.UNRECOVERABLE: frozenset({_R.UNKNOWN}),
}

DEPLOYABLE_TRANSITIONS: Mapping[DeployableState, frozenset[DeployableState]] = {
    _D.STARTING: frozenset({_D.RUNNING, _D.RECOVERING, _D.FAILED, _D.STOPPING}),
    _D.RUNNING: frozenset({_D.RECOVERING, _D.FAILED, _D.STOPPING}),
    _D.RECOVERING: frozenset({_D.RUNNING, _D.FAILED, _D.STOPPING}),
    _D.FAILED: frozenset({_D.STARTING, _D.STOPPING}),
    _D.STOPPING: frozenset({_D.STOPPED, _D.FAILED}),
    _D.STOPPED: frozenset({_D.STARTING}),
}


class InvalidTransition(RuntimeError):
    """A state change the tables do not allow: a bug in the engine, not bad input."""


@dataclass(frozen=True)
class Subject:
    """What a state belongs to: the deployable, one of its assemblies, or a resource."""

    deployable: str
    assembly: str | None = None
    resource: str | None = None

    def __str__(self) -> str:
        return "/".join(p for p in (self.deployable, self.assembly, self.resource) if p)


S = TypeVar("S", AssemblyState, ResourceState, DeployableState)

Emit = Callable[[Event], None]
Now = Callable[[], float]


class StateCell(Generic[S]):
    """The state of one supervised object; an event on every change."""

    def __init__(
        self,
        subject: Subject,
        initial: S,
        transitions: Mapping[S, frozenset[S]],
        emit: Emit,
        now: Now,
    ) -> None:
        self.subject = subject
        self.state: S = initial
        self.reason = ""
        self._transitions: Mapping[S, frozenset[S]] = transitions
        self._emit = emit
        self._now = now

    def set(self, state: S, reason: str) -> bool:
        """Change the state; False (and no event) if it already is ``state``."""
        if state == self.state:
            return False
        if state not in self._transitions.get(self.state, frozenset()):
            raise InvalidTransition(f"{self.subject}: {self.state} -> {state} ({reason})")
        self.state, self.reason = state, reason
        self._emit(self.event(str(state), reason))
        return True

    def announce(self, state: S, reason: str) -> None:
        """Set ``state``; if it already is, still tell why (a note)."""
        if not self.set(state, reason):
            self.note(reason)

    def settle(self, state: S, reason: str) -> None:
        """Set ``state``; if it already is, and why has changed (a reload added parts
        to a running deployable), tell the new reason."""
        if not self.set(state, reason) and reason != self.reason:
            self.reason = reason
            self.note(reason)

    def reset(self, state: S, reason: str) -> None:
        """Change the state without an event: what it was is gone and nobody needs
        telling (a stopped resource whose instance a stop destroyed)."""
        if state != self.state and state not in self._transitions.get(self.state, frozenset()):
            raise InvalidTransition(f"{self.subject}: {self.state} -> {state} ({reason})")
        self.state, self.reason = state, reason

    def note(self, reason: str) -> None:
        """An event that changes no state (for example why a resource cannot start)."""
        self._emit(self.event(str(self.state), reason))

    def event(self, state: str, reason: str) -> Event:
        return Event(
            time=self._now(),
            deployable=self.subject.deployable,
            state=state,
            reason=reason,
            assembly=self.subject.assembly,
            resource=self.subject.resource,
        )


def assembly_cell(subject: Subject, emit: Emit, now: Now) -> StateCell[AssemblyState]:
    return StateCell(subject, AssemblyState.UNKNOWN, ASSEMBLY_TRANSITIONS, emit, now)


def resource_cell(subject: Subject, emit: Emit, now: Now) -> StateCell[ResourceState]:
    return StateCell(subject, ResourceState.UNKNOWN, RESOURCE_TRANSITIONS, emit, now)


def deployable_cell(subject: Subject, emit: Emit, now: Now) -> StateCell[DeployableState]:
    return StateCell(subject, DeployableState.STARTING, DEPLOYABLE_TRANSITIONS, emit, now)


# ---------------------------------------------------------------------------
# reasons: the words events use, in one place


def seconds(value: float) -> str:
    """``3.0 s``, ``0.25 s``, ``10 s``: durations as events print them."""
    text = f"{value:.2f}".rstrip("0")
    return f"{text}0 s" if text.endswith(".") else f"{text} s"


def no_heartbeat(silent_for: float) -> str:
    """``no heartbeat for 3.0 s`` (tenths: a timer is a few ms late under load)."""
    return f"no heartbeat for {silent_for:.1f} s"


def escalating(failures: int, period: float, to: str) -> str:
    """``2 failures in 10 s: escalating to assembly``."""
    return f"{_failures(failures, period)}: escalating to {to}"


def giving_up(failures: int, period: float) -> str:
    """The deployable keeps failing: nothing above it to escalate to."""
    return f"{_failures(failures, period)}: no more recovery until it is started again"


def _failures(failures: int, period: float) -> str:
    noun = "failure" if failures == 1 else "failures"
    return f"{failures} {noun} in {period:g} s"
