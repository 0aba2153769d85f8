"""Deciding that a silent guest is lost: silence, dped's own lag, a fresh probe.

Overload is not failure.  A guest is failed for silence only with evidence:
how long it was silent, how much of that time dped's own loop was stalled
(``dpe.loop_lag``: then dped could not have heard it), and the answer to a
fresh keepalive sent once the silence was noticed.  When the loop was stalled
during the silence the guest has not had the whole ``heartbeat.timeout`` of
dped's attention, so the fresh probe waits a whole timeout; otherwise one
``heartbeat.interval``.  Only an unanswered probe fails the guest, and the
event says all three: ``no heartbeat for 3.0 s (loop lag 0.0 s; fresh
keepalive: no answer within 1 s)``.  A connection that is gone (reset,
closed) needs no more evidence: ``connection lost: ...``.
"""

from __future__ import annotations

from dataclasses import dataclass

from dpe.engine_timing import bounded
from dpe.interfaces import Connection
from dpe.loop_lag import LagClock
from dpe.states import no_heartbeat
from foundation.errors import OperationTimeout, Unavailable
from foundation.model import Heartbeat

_GRACE = 1.0  # beyond the keepalive's own timeout, before the engine gives up on it


@dataclass(frozen=True)
class Evidence:
    """Why a silent guest is (or is not) lost."""

    silent: float  # seconds since it was last heard
    lag: float  # seconds of that (and of the probe) dped's loop was stalled
    probe: str  # what the fresh keepalive got
    answered: bool
    lost_connection: str | None = None  # the connection's error, when it is gone
    cause: str = ""  # what noticed the silence, when not the keepalive itself

    def reason(self) -> str:
        """The event's reason (when not answered)."""
        if self.lost_connection is not None:
            return f"connection lost: {self.lost_connection}"
        return f"{no_heartbeat(self.silent)} ({self.details()})"

    def details(self) -> str:
        cause = f"{self.cause}; " if self.cause else ""
        return cause + self.measures()

    def measures(self) -> str:
        """What dped measured: its loop's lag, and the fresh keepalive's answer."""
        return f"loop lag {self.lag:.1f} s; fresh keepalive: {self.probe}"


async def probe_silence(
    clock: LagClock,
    connection: Connection,
    heartbeat: Heartbeat,
    since: float,
    cause: str = "",
) -> Evidence:
    """Send a fresh keepalive about a guest silent since ``since`` (a monotonic reading)."""
    silent = clock.monotonic() - since
    fair = silent - clock.lag_since(since) >= heartbeat.timeout
    wait = heartbeat.interval if fair else heartbeat.timeout
    sent = clock.monotonic()
    lost: str | None = None
    try:
        await bounded(clock, wait + _GRACE, connection.keepalive(wait), "a fresh keepalive")
    except OperationTimeout:
        probe, answered = f"no answer within {wait:g} s", False
    except Unavailable as error:
        probe, answered, lost = f"connection lost: {error}", False, str(error)
    else:
        probe, answered = f"answered in {clock.monotonic() - sent:.2f} s", True
    return Evidence(silent, clock.lag_since(since), probe, answered, lost, cause)
