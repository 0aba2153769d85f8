"""Capped exponential back-off: the one rule every part waits by.

``Backoff(initial, maximum)`` is the rule: the delay before retry number n
(1, 2, ...) is ``initial * 2**(n - 1)``, never above ``maximum``.  With
``free`` set, that many failures in a row are retried at once first.

``Retries`` counts the failures in a row under a rule (``failed()``,
``reset()``) and says how long to wait now (``delay``); ``pause(clock)``
waits that long on an injected clock, so tests drive the waiting.

Used by the engine (transitions, instance creation, resource restarts,
connecting), cped's DPE supervisor (restarting a dped) and the shell's event
follower (reconnecting).
"""

from __future__ import annotations

from dataclasses import dataclass

from foundation.clock import Clock

MAX_EXPONENT = 60  # 2**60 times any sane initial delay is past any cap (and no overflow)


@dataclass(frozen=True)
class Backoff:
    initial: float
    maximum: float
    free: int = 0  # failures in a row that are retried at once

    def delay(self, failures: int) -> float:
        """How long to wait after ``failures`` failures in a row."""
        retry = failures - self.free
        if retry <= 0:
            return 0.0
        return float(min(self.maximum, self.initial * 2.0 ** min(retry - 1, MAX_EXPONENT)))


class Retries:
    """Failures in a row under a back-off rule."""

    def __init__(self, rule: Backoff) -> None:
        self.rule = rule
        self.failures = 0

    @property
    def delay(self) -> float:
        return self.rule.delay(self.failures)

    def failed(self) -> float:
        """Count a failure; the delay before the next attempt."""
        self.failures += 1
        return self.delay

    def reset(self) -> None:
        self.failures = 0

    async def pause(self, clock: Clock) -> None:
        """Wait the current delay on ``clock`` (not at all when there is none)."""
        if self.delay:
            await clock.sleep(self.delay)
