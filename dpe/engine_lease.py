"""The deployable's lease: one DPE keeps it, and stops acting the moment it may not.

The lease is a row in the store with a holder and an epoch that grows on every
takeover.  ``acquire`` waits up to ``lease_wait`` for a previous holder's lease
to expire; ``hold`` renews it every ``lease_renew``.  Taken over, or not renewed
for ``lease_ttl`` (the store does not answer), the DPE fences itself:
``on_lost`` makes it act no more, and ``halted`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from dpe.engine_log import Context
from dpe.engine_timing import EngineOptions
from dpe.runtime import Runtime
from foundation.clock import Clock
from foundation.errors import Conflict, PcloudError


@dataclass(eq=False)
class LeaseKeeper:
    runtime: Runtime
    clock: Clock
    options: EngineOptions
    holder: str
    log: Context
    on_lost: Callable[[], None]  # makes the engine act no more
    epoch: int | None = field(default=None, init=False)
    held: bool = field(default=False, init=False)
    halted: asyncio.Event = field(default_factory=asyncio.Event, init=False)  # lost: no more acts
    lost_reason: str = field(default="", init=False)
    _renewed_at: float = field(default=0.0, init=False)

    async def acquire(self, deployable: str) -> None:
        """Hold the lease, or raise ``Conflict`` once ``lease_wait`` has passed."""
        deadline = self.clock.monotonic() + self.options.lease_wait
        while True:
            epoch = self.runtime.acquire_lease(
                self.holder, os.getpid(), self.options.lease_ttl, self.clock.time()
            )
            if epoch is not None:
                self.epoch, self.held = epoch, True
                self._renewed_at = self.clock.monotonic()
                return
            if self.clock.monotonic() >= deadline:
                raise Conflict(
                    f"deployable {deployable} is kept by another DPE (its lease is held)",
                    deployable=deployable,
                )
            await self.clock.sleep(self.options.lease_renew)

    async def hold(self) -> None:
        """Renew the lease until it is lost."""
        while True:
            await self.clock.sleep(self.options.lease_renew)
            renewed = self._renew()
            if renewed:
                self._renewed_at = self.clock.monotonic()
                continue
            silent = self.clock.monotonic() - self._renewed_at
            if renewed is False or silent >= self.options.lease_ttl:
                self._lose(
                    "the lease was taken over" if renewed is False else "cannot renew the lease"
                )
                return

    def end(self, *, release: bool) -> None:
        """This engine ends: give the lease up at once (``release``) or let it expire."""
        if release and self.held and self.epoch is not None:
            with contextlib.suppress(PcloudError):
                self.runtime.release_lease(self.holder, self.epoch)
        self.held = False

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

    def _lose(self, reason: str) -> None:
        """Fence ourselves: no more actions, no more writes; the instances stay."""
        self.log.error("%s (epoch %s): acting no more", reason, self.epoch)
        self.held = False
        self.lost_reason = reason
        self.on_lost()
        self.halted.set()
