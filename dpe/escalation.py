"""The failure window: when the same thing keeps failing, recover one level up.

Each recoverable object (resource, assembly, deployable) keeps the times of its
last N failures.  On a failure, if escalation is on (N > 0 and P > 0) and at
least N failures are recorded and the oldest and newest of the last N lie
within P seconds, the failure escalates and the window starts again from
zero; otherwise the object is restarted in place.  The N-th failure within P
seconds is the one that escalates.  Times are wall-clock seconds (they are
stored, and continue across a DPE restart).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from dpe.states import escalating, giving_up
from foundation.model import Escalation


class Verdict(StrEnum):
    RESTART = "restart"
    ESCALATE = "escalate"


@dataclass
class FailureWindow:
    policy: Escalation = field(default_factory=Escalation)
    times: list[float] = field(default_factory=list)

    @classmethod
    def restore(cls, policy: Escalation, times: Iterable[float]) -> FailureWindow:
        window = cls(policy)
        window.times = [float(t) for t in times]
        window._trim()
        return window

    def record(self, now: float) -> Verdict:
        """Count a failure at ``now``; RESTART or ESCALATE (which resets the window)."""
        if not self.policy.enabled:
            self.times.clear()
            return Verdict.RESTART
        self.times.append(now)
        self._trim()
        if self._full() and self.times[-1] - self.times[0] <= self.policy.period:
            self.times.clear()
            return Verdict.ESCALATE
        return Verdict.RESTART

    def retune(self, policy: Escalation) -> None:
        """A new policy (reload): keep the failures that still fit in it."""
        self.policy = policy
        if not policy.enabled:
            self.times.clear()
        self._trim()

    def reset(self) -> None:
        self.times.clear()

    def reason(self, to: str) -> str:
        """The event reason of an escalation to the level ``to``."""
        return escalating(self.policy.failures, self.policy.period, to)

    def giving_up(self) -> str:
        """The event reason when there is no level left to escalate to."""
        return giving_up(self.policy.failures, self.policy.period)

    def _full(self) -> bool:
        return len(self.times) >= self.policy.failures

    def _trim(self) -> None:
        if self.policy.failures > 0:
            del self.times[: -self.policy.failures]
