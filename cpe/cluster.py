"""What cped does differently as one member among several (``cpe.membership``).

- Lifecycle requests for a deployable another member runs: ``start`` and
  ``reload`` travel through the store to that member (``Membership.request``);
  ``stop`` records the desired state and waits, reading the store, until that
  member's DPE has stopped it (its lease released, no instance left) or
  ``wait`` runs out (202, as on the member itself).
- Keys: a start request publishes the deployable's keys this member has
  (sealed, ``foundation.keyshare``) and fetches those it lacks, so whichever
  member runs it has them.
- Leaving: a member that stops while others are alive hands every deployable
  over before it goes (with none alive, its DPEs keep running, as with one
  cped, for the next cped to adopt).
- ``GET /v1/cluster``: members, their health, what each runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from cpe.membership import Membership, member_of
from cpe.supervisor import Supervisor
from foundation.errors import Conflict, PcloudError
from foundation.events import Event
from foundation.keyshare import KeyShare
from foundation.runtime_kinds import INSTANCE
from foundation.store import Store

log = logging.getLogger("cped.cluster")

T = TypeVar("T")
StoreCall = Callable[..., Awaitable[Any]]
STOP_POLL = 0.2
HANDOVER_POLL = 0.1


@dataclass
class Cluster:
    store: Store
    membership: Membership
    in_store: StoreCall
    key_share: KeyShare | None = None

    def elsewhere(self, name: str) -> bool:
        """Another member runs ``name``."""
        return not self.membership.owns(name)

    def several(self) -> bool:
        """More than one member ever shared the store (a lone cped says nothing of it)."""
        return len(self.membership.members) > 1

    # -- lifecycle requests for another member's deployable ---------------------------

    async def start(self, name: str) -> dict[str, Any]:
        await self.membership.request(name, "start")
        owner = self.membership.owner(name)
        lease = await self._db(self.store.get_lease, name)
        return {
            "pid": lease["pid"] if lease else None,
            "member": owner,
            "note": f"member {owner} runs it",
        }

    async def reload(self, name: str) -> dict[str, Any]:
        await self.membership.request(name, "reload")
        owner = self.membership.owner(name)
        return {"pid": None, "member": owner, "note": f"member {owner} re-reads the document"}

    async def tell_requests(self, name: str) -> str:
        await self.membership.request(name, "requests")
        return f"member {self.membership.owner(name)} is doing it"

    async def stop(self, name: str, wait: float) -> dict[str, Any] | None:
        """Wait until the member that runs it has stopped it; None after ``wait``.

        Stopped: no instance left, the lease released, and the DPE that held it
        seen to exit (its member's ``dpe-exited`` event)."""
        deadline = time.monotonic() + wait
        mark = await self._db(self.store.last_event_id)
        lease, _ = await self._db(_lease_and_instances, self.store, name)
        last_pid = lease["pid"] if lease and lease["holder"] else None
        while True:
            lease, left = await self._db(_lease_and_instances, self.store, name)
            if lease and lease["holder"]:
                last_pid = lease["pid"]
            elif not left and (last_pid is None or await self._exited(name, mark)):
                owner = self.membership.owner(name)
                return {"pid": last_pid, "left": [], "member": owner}
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(STOP_POLL)

    async def _exited(self, name: str, mark: int) -> bool:
        events = await self._db(_events_after, self.store, name, mark)
        return any(e.state == "dpe-exited" for e in events)

    def member_running(self, lease_holder: str | None, name: str) -> str:
        return member_of(lease_holder) or self.membership.owner(name)

    # -- keys ---------------------------------------------------------------------------

    async def share_keys(self, assemblies: list[str]) -> None:
        if self.key_share is None:
            return
        published = await self._db(self.key_share.publish, assemblies)
        fetched = await self._db(self.key_share.fetch, assemblies)
        if published or fetched:
            log.info("keys published: %s; fetched: %s", published or "none", fetched or "none")

    async def publish_all_keys(self) -> None:
        """Once, when the member starts: the keys it has of every assembly in the store
        (after a move from SQLite, the old host's keys reach the others this way)."""
        if self.key_share is None:
            return
        try:
            rows = await self._db(self.store.list_assemblies)
            await self.share_keys([doc["name"] for doc, _owner in rows])
        except PcloudError as error:
            log.warning("cannot publish the assemblies' keys: %s", error)

    # -- the owner's side of requests -------------------------------------------------

    def on_request(self, supervisor: Supervisor) -> Callable[[str, str], None]:
        def act(name: str, kind: str) -> None:
            if kind == "start":
                supervisor.start(name)  # settled by the supervisor; nobody waits here
                return
            if kind == "requests":
                supervisor.tell_requests(name)
                return
            try:
                supervisor.reload(name)
            except Conflict as error:
                log.warning("deployable=%s: reload requested: %s", name, error)

        return act

    # -- leaving ---------------------------------------------------------------------------

    async def leave(self, supervisor: Supervisor | None, timeout: float) -> None:
        """Hand every deployable over to the other members, if any is alive."""
        if not self.membership.others_alive():
            log.info("no other member is alive: DPEs keep running for the next cped")
            return
        await self.membership.leave()
        if supervisor is None:
            return
        deadline = time.monotonic() + timeout
        while any(slot.process is not None for slot in supervisor.slots.values()):
            if time.monotonic() >= deadline:
                log.warning("leaving with DPEs that did not hand over within %g s", timeout)
                return
            supervisor.wake()
            await asyncio.sleep(HANDOVER_POLL)
        log.info("every deployable handed over: leaving")

    # -- cluster status ------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        leases = await self._db(self.store.list_leases)
        now = await self._db(self.store.now)
        return self.membership.status(leases, now)

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        result: T = await self.in_store(fn, *args)
        return result


def _events_after(store: Store, name: str, mark: int) -> list[Event]:
    return store.query_events(deployable=name, after_id=mark, limit=1000)


def _lease_and_instances(store: Store, name: str) -> tuple[dict[str, Any] | None, list[str]]:
    with store.snapshot():
        return store.get_lease(name), sorted(store.get_runtime(name).get(INSTANCE, {}))
