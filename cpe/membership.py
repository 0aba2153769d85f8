"""Members: the cped processes sharing one store, and which of them runs what.

Each cped registers as a member (``[cped] member``, the host name by default)
and writes a heartbeat row every third of ``member_ttl``; a member whose
heartbeat is older than ``member_ttl`` by the store's clock (or who left) is
gone.  Agreement comes from the store, never from the members talking among
themselves: PostgreSQL's transactions order every heartbeat and every lease
change, so there is no home-made consensus here.

Placement: rendezvous (highest random weight) hashing.  Each member ranks
the live members for a deployable by ``sha256(member, deployable)`` and the
highest runs it.  Every member computes the same answer from the same rows,
without messages or a coordinator, and a change of membership moves only
what it must: a member that dies loses its deployables to the others, each
to its own next choice (so they spread instead of piling onto one member);
a member that joins takes about 1/N of them, each from whichever member had
it.  Claiming free leases would place a deployable wherever a member was
quickest after a failure (piling up on the fastest) and need a separate
rule to rebalance; rendezvous gives spreading and rebalancing from one rule.

The lease (``foundation.store``) keeps it safe while views differ: members
may briefly disagree about who is alive (around a heartbeat's ``member_ttl``),
but only one DPE ever holds a deployable's lease, and a member never starts
a DPE while another holds it (``cpe.supervisor`` waits for the release or the
expiry).  A deployable whose owner changes is handed over: the old member
tells its DPE to release the lease and exit leaving everything running
(SIGUSR1), and the new owner's DPE adopts.

Requests to another member's deployable (start clearing a failure, reload)
travel through the store: ``request`` counts one, and the owner acts when it
sees the count grow (at its next heartbeat).  A heartbeat that finds a member
come or gone calls ``on_change`` (cped's supervisor looks at once: placement
may have moved).

``offset`` is the store's clock minus this host's, measured at each heartbeat:
``StoreClock`` reads the store's time without asking it, for the supervisor's
judgement of leases.

Heartbeats have a store connection and a thread of their own (``in_thread``):
a slow API request on the member's main store connection never delays them,
so a busy member is not mistaken for a gone one.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from cpe.control import process_alive
from foundation.clock import Clock, SystemClock
from foundation.config import Config
from foundation.errors import PcloudError
from foundation.store import Store

log = logging.getLogger("cped.membership")

T = TypeVar("T")
StoreCall = Callable[..., Awaitable[Any]]
RequestHandler = Callable[[str, str], None]  # (deployable, kind)
HEARTBEATS_PER_TTL = 3
REQUEST_KINDS = ("start", "reload", "requests")  # requests: read the recorded ones (a move)


@dataclass(frozen=True)
class MemberOptions:
    name: str
    url: str | None = None
    ttl: float = 2.0

    @classmethod
    def from_config(cls, config: Config) -> MemberOptions:
        cped = config.cped
        return cls(cped.member_name, cped.member_url, cped.member_ttl)

    @property
    def interval(self) -> float:
        return self.ttl / HEARTBEATS_PER_TTL


def rendezvous_owner(deployable: str, members: Iterable[str]) -> str | None:
    """The member that runs ``deployable`` among ``members`` (None if there are none)."""
    return max(members, key=lambda member: (_weight(member, deployable), member), default=None)


def _weight(member: str, deployable: str) -> int:
    digest = hashlib.sha256(f"{member}\0{deployable}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def member_of(holder: str | None) -> str | None:
    """The member part of a lease holder ``MEMBER:PID``."""
    return holder.rsplit(":", 1)[0] if holder else None


def in_thread(executor: ThreadPoolExecutor) -> StoreCall:
    """Run store calls on ``executor`` (a thread of the membership's own)."""

    async def call(fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(executor, partial(fn, *args))

    return call


class Membership:
    def __init__(
        self,
        store: Store,
        in_store: StoreCall,
        options: MemberOptions,
        *,
        host: str | None = None,
        pid: int | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.store = store
        self._in_store = in_store
        self.options = options
        self.name = options.name
        self.host = host or socket.gethostname()
        self.pid = pid or os.getpid()
        self.clock: Clock = clock or SystemClock()
        self.live: frozenset[str] = frozenset({self.name})
        self.members: list[dict[str, Any]] = []
        self.offset = 0.0  # the store's clock minus this host's
        self.leaving = False
        self.beats = 0
        self._seen: dict[tuple[str, str], int] | None = None
        self.on_change: Callable[[], None] = _nothing  # who is alive changed (placement moves)

    # -- joining, beating, leaving ------------------------------------------------

    async def join(self) -> None:
        """Register (Conflict if a live cped already has this member name)."""
        await self._db(
            self.store.join_member,
            self.name,
            self.host,
            self.pid,
            self.options.url,
            self.options.ttl,
            self._gone,
        )
        await self.beat()

    def _gone(self, host: str, pid: int) -> bool:
        """A former cped of this name on this host that is dead (restarted quickly)."""
        return host == self.host and not process_alive(pid)

    async def run(self, on_request: RequestHandler | None = None) -> None:
        """Beat until cancelled; a failing beat is logged and the next one tried."""
        while True:
            await self.clock.sleep(self.options.interval)
            try:
                await self.beat(on_request)
            except PcloudError as error:
                log.warning("member %s: heartbeat failed: %s", self.name, error)

    async def beat(self, on_request: RequestHandler | None = None) -> None:
        """One heartbeat: write ours (not once leaving), read everyone's, pass on new
        requests."""
        if not self.leaving:
            sent = self.clock.time()
            store_now = await self._db(self.store.heartbeat_member, self.name, self.host, self.pid)
            self.offset = store_now - (sent + self.clock.time()) / 2
        _, members = await self._db(self.store.list_members)
        self.members = members
        live, self.live = self.live, self._alive(members)
        self.beats += 1
        if live != self.live:
            self.on_change()
        self._dispatch(await self._db(self.store.list_requests), on_request)

    def _alive(self, members: list[dict[str, Any]]) -> frozenset[str]:
        ttl = self.options.ttl
        alive = {m["name"] for m in members if m["state"] == "up" and m["age"] < ttl}
        return frozenset(alive | {self.name})

    async def leave(self) -> None:
        """Say this member is gone (it hands its deployables over first)."""
        self.leaving = True
        try:
            await self._db(self.store.leave_member, self.name, self.host, self.pid)
        except PcloudError as error:
            log.warning("member %s: cannot record leaving: %s", self.name, error)

    # -- who runs what --------------------------------------------------------------

    def owner(self, deployable: str) -> str:
        candidates = self.live - {self.name} if self.leaving else self.live
        return rendezvous_owner(deployable, candidates) or self.name

    def owns(self, deployable: str) -> bool:
        return not self.leaving and self.owner(deployable) == self.name

    def others_alive(self) -> bool:
        return bool(self.live - {self.name})

    def is_alive(self, member: str | None) -> bool:
        return member in self.live

    def holder_gone(self, holder: str) -> bool:
        """The lease holder ``MEMBER:PID`` belongs to a member that is gone (not this one)."""
        member = member_of(holder)
        return member is not None and member != self.name and member not in self.live

    # -- requests between members ----------------------------------------------------

    async def request(self, deployable: str, kind: str) -> None:
        """Ask the member that runs ``deployable`` to ``kind`` (start, reload, requests) it."""
        if kind not in REQUEST_KINDS:
            raise ValueError(f"not a request: {kind!r}")
        await self._db(self.store.add_request, deployable, kind)

    def _dispatch(
        self, requests: dict[tuple[str, str], int], on_request: RequestHandler | None
    ) -> None:
        seen, self._seen = self._seen, dict(requests)
        if seen is None or on_request is None:
            return  # the first look only learns where the counts stand
        for (deployable, kind), count in requests.items():
            if count > seen.get((deployable, kind), 0) and self.owns(deployable):
                log.info("deployable=%s: %s requested through the store", deployable, kind)
                on_request(deployable, kind)

    # -- cluster status ------------------------------------------------------------------

    def status(self, leases: dict[str, dict[str, Any]], now: float) -> dict[str, Any]:
        """Every member, its health and the deployables it runs (by lease) and should run."""
        running: dict[str, list[str]] = {}
        for deployable, lease in leases.items():
            holder = member_of(lease["holder"])
            if holder is not None and float(lease["expires_at"]) > now:
                running.setdefault(holder, []).append(deployable)
        rows = [self._member_row(m, running) for m in self.members]
        return {
            "member": self.name,
            "store": self.store.location,
            "members": rows,
            "unowned": sorted(
                deployable
                for deployable, lease in leases.items()
                if not lease["holder"] or float(lease["expires_at"]) <= now
            ),
        }

    def _member_row(self, member: dict[str, Any], running: dict[str, list[str]]) -> dict[str, Any]:
        name = member["name"]
        if member["state"] == "left":
            health = "left"
        elif name in self.live:
            health = "alive"
        else:
            health = "gone"
        return {
            "name": name,
            "url": member["url"],
            "host": member["host"],
            "pid": member["pid"],
            "health": health,
            "heartbeat_age": round(float(member["age"]), 3),
            "deployables": sorted(running.get(name, [])),
            "self": name == self.name,
        }

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        result: T = await self._in_store(fn, *args)
        return result


def _nothing() -> None:
    return None


class StoreClock:
    """This host's clock shifted onto the store's (``Membership.offset``)."""

    def __init__(self, membership: Membership, base: Clock | None = None) -> None:
        self._membership = membership
        self._base: Clock = base or SystemClock()

    def monotonic(self) -> float:
        return self._base.monotonic()

    def time(self) -> float:
        return self._base.time() + self._membership.offset

    async def sleep(self, seconds: float) -> None:
        await self._base.sleep(seconds)
