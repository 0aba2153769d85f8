"""The deployable's lease: one DPE keeps it, and stops acting the moment it may not.

The lease is a row in the store with a holder and an epoch that grows on every
takeover.  ``acquire`` waits up to ``lease_wait`` for a previous holder's lease
to expire; ``hold`` renews it every ``lease_renew``, at ``phase`` of the wall
clock when given (where the deployable's guests send their heartbeats: dped
wakes once for both, not twice a second).  Taken over, or not renewed
in time (the store does not answer), the DPE fences itself: ``on_lost`` makes
it act no more, and ``halted`` is set.  It stops acting ``fence_margin``
before the lease can expire, counted from when it sent its last successful
renewal on its own monotonic clock (the store ran it later), or at once when
the store refuses a write of its epoch (``lose``, on ``LeaseLost``).  When the
window passed because the loop itself stalled (dped not scheduled, or
stopped) or a renewal waited that long for the store (on SQLite, another
process of the host held the write lock: cped stopped in a write), not
because the store was silent, it takes the lease back if it is still its own
under the same epoch (nobody took it meanwhile, so nobody else acted) and
goes on; otherwise it fences itself as above.  A
``watchdog`` (``dpe.fencing``), when given, ends the process should the loop
be too stuck to fence itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from dpe.engine_log import Context
from dpe.engine_timing import EngineOptions, at_phase
from dpe.runtime import Runtime
from foundation.clock import Clock
from foundation.errors import Conflict, PcloudError

LEASE_POLL = 0.2  # how often a held lease is tried while waiting for it
STALL = 1.0  # a renewal this late is the loop's own stall, not the store's silence
LOOP_STALL = "the loop stalled {:.1f} s"
STORE_WAIT = "a renewal waited {:.1f} s for the store"  # on SQLite: another writer's lock


class Watchdog(Protocol):
    """Ends the process at a deadline the loop failed to meet (``dpe.fencing``)."""

    def arm(self, deadline: float) -> None: ...

    def disarm(self) -> None: ...


def _nothing() -> None:
    pass


@dataclass(eq=False)
class LeaseKeeper:
    runtime: Runtime
    clock: Clock
    options: EngineOptions
    holder: str
    log: Context
    on_lost: Callable[[], None]  # makes the engine act no more
    watchdog: Watchdog | None = None
    on_renewed: Callable[[], None] = _nothing  # writes that waited for the store go now
    phase: Callable[[], float] | None = None  # seconds into lease_renew, by the wall clock
    epoch: int | None = field(default=None, init=False)
    held: bool = field(default=False, init=False)
    halted: asyncio.Event = field(default_factory=asyncio.Event, init=False)  # lost: no more acts
    lost_reason: str = field(default="", init=False)
    _valid_until: float = field(default=0.0, init=False)  # monotonic: act until then

    async def acquire(self, deployable: str) -> None:
        """Hold the lease, or raise ``Conflict`` once ``lease_wait`` has passed."""
        deadline = self.clock.monotonic() + self.options.lease_wait
        waiting = False
        while True:
            sent = self.clock.monotonic()
            epoch = self.runtime.acquire_lease(
                self.holder, os.getpid(), self.options.lease_ttl, self.clock.time()
            )
            if epoch is not None:
                self.epoch, self.held = epoch, True
                self._renewed(sent)
                return
            if self.clock.monotonic() >= deadline:
                raise Conflict(
                    f"deployable {deployable} is kept by another DPE (its lease is held)",
                    deployable=deployable,
                )
            if not waiting:
                waiting = True
                self.log.info("the lease is held: waiting up to %g s", self.options.lease_wait)
            # often: a DPE started early (its holder's member is gone) takes it at expiry
            await self.clock.sleep(min(self.options.lease_renew, LEASE_POLL))

    async def hold(self) -> None:
        """Renew the lease until it is lost."""
        while True:
            now = self.clock.monotonic()
            wait = max(0.0, min(self._until_renewal(), self._valid_until - now))
            await self.clock.sleep(wait)
            late = self.clock.monotonic() - (now + wait)
            if self.clock.monotonic() >= self._valid_until:
                if late < STALL or not self._take_back(late, LOOP_STALL):
                    self.lose(self._fence_reason())
                    return
                continue
            sent = self.clock.monotonic()
            renewed = self._renew()
            if renewed is False:
                self.lose("the lease was taken over")
                return
            if renewed:
                self._renewed(sent)
            if self.clock.monotonic() >= self._valid_until:  # the call took the window
                waited = self.clock.monotonic() - sent
                if waited < STALL or not self._take_back(waited, STORE_WAIT):
                    self.lose(self._fence_reason())
                    return
                continue
            if renewed:
                self.on_renewed()

    def _until_renewal(self) -> float:
        """Seconds to the next renewal: ``lease_renew``, at ``phase`` if given (the
        first renewal sooner, to get there)."""
        every = self.options.lease_renew
        if self.phase is None:
            return every
        return at_phase(self.clock.time(), every, self.phase(), every)

    def end(self, *, release: bool) -> None:
        """This engine ends: give the lease up at once (``release``) or let it expire."""
        if self.held:  # before the release: a successor acts only after this line
            self.log.info("stopped acting (lease epoch %s)", self.epoch)
        if release and self.held and self.epoch is not None:
            with contextlib.suppress(PcloudError):
                self.runtime.release_lease(self.holder, self.epoch)
        self.held = False
        if self.watchdog is not None:
            self.watchdog.disarm()

    def _take_back(self, late: float, what: str) -> bool:
        """The loop itself was held up past the safe window (the host did not run dped,
        it was stopped, or a store call waited for another process's write lock), not
        by a silent store: the lease again if it is still ours, under the same epoch,
        so no other DPE took it (and acted) meanwhile; this one did not act either."""
        sent = self.clock.monotonic()
        if not self._renew():
            return False
        self._renewed(sent)
        self.log.warning(
            "%s, past the lease's safe window; the lease was still ours (epoch %s): acting again",
            what.format(late),
            self.epoch,
        )
        self.on_renewed()
        return True

    def _renewed(self, sent: float) -> None:
        """The lease runs ttl from when the store ran the renewal, which was after
        ``sent``: acting stops a margin before that (the watchdog half a margin)."""
        ttl, margin = self.options.lease_ttl, self.options.fence_margin
        self._valid_until = sent + ttl - margin
        if self.watchdog is not None:
            self.watchdog.arm(sent + ttl - margin / 2)

    def _fence_reason(self) -> str:
        margin = self.options.fence_margin
        silent = self.options.lease_ttl - margin
        return (
            f"cannot renew the lease: self-fenced {silent:g} s after the last renewal,"
            f" {margin:g} s before it can expire"
        )

    def _renew(self) -> bool | None:
        """True renewed, False lost to another DPE, None the store did not answer."""
        assert self.epoch is not None
        ttl, now = self.options.lease_ttl, self.clock.time()
        try:
            if self.runtime.renew_lease(self.holder, self.epoch, ttl, now):
                return True
            # expired but perhaps still ours (the loop was held up): take it back
            again = self.runtime.acquire_lease(self.holder, os.getpid(), ttl, now)
        except PcloudError as error:
            self.log.warning("cannot renew the lease: %s", error)
            return None
        return again == self.epoch

    def lose(self, reason: str) -> None:
        """Fence ourselves: no more actions, no more writes; the instances stay."""
        if not self.held:
            return
        self.log.error("%s (epoch %s): acting no more", reason, self.epoch)
        self.held = False
        if self.watchdog is not None:
            self.watchdog.disarm()
        self.lost_reason = reason
        self.on_lost()
        self.halted.set()
