"""The lifecycle requests of the API: start, stop, reload, delete, status.

Each request first applies the catalog's rules in one store transaction (the
deployable exists; to start or reload, its document is complete and its
assemblies have key pairs; the desired state), then asks the supervisor to act
and waits, bounded and without blocking the loop, for its answer:

- ``start`` is idempotent: a deployable whose DPE runs answers 200 with
  ``note: "already running"``; a running one that had ``failed`` gets a new
  DPE that clears the failed state.
- ``stop`` answers 200 once the DPE has stopped the deployable and exited, or
  202 (``state: stopping``) when that takes longer than ``wait``; a DPE still
  running after ``kill_after`` is killed, and what it left is stopped by a new
  DPE.
- ``reload`` sends SIGHUP to the DPE (the document is already in the store).
- ``delete`` with ``force`` stops a running deployable first.

Without a supervisor (an API served for tests) start, stop and reload answer
503; status and delete still work from the store.

As one member among several (``cluster``), a start first shares the
deployable's keys through the store, and requests for a deployable another
member runs go to that member through the store (``cpe.cluster``); answers
then name the ``member``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

from cpe.catalog import Catalog, deployables, documents, runstate
from cpe.cluster import Cluster
from cpe.routes import FORCE_WAIT, STOP_WAIT, Answer
from cpe.status import StatusRecord, compose_status, read_status
from cpe.supervisor import StoreCall, Supervisor
from foundation.errors import Conflict, Unavailable
from foundation.model import Deployable

T = TypeVar("T")
START_WAIT = 5.0  # a start answers once the DPE is spawned (or adopted, or kept)
STOP_MARGIN = 30.0  # on top of the resources' stop timeouts, before SIGKILL
FORCE_KILL_AFTER = 10.0  # delete with force: a DPE stuck in its stop is killed sooner
SETTLE = 0.1  # the least a stop request waits: enough for one with nothing to stop


class Lifecycle:
    def __init__(
        self,
        catalog: Catalog,
        supervisor: Supervisor | None,
        in_store: StoreCall,
        clock: Callable[[], float] = time.time,
        cluster: Cluster | None = None,
    ) -> None:
        self.catalog = catalog
        self.supervisor = supervisor
        self._in_store = in_store
        self.clock = clock
        self.cluster = cluster

    async def start(self, name: str) -> dict[str, Any]:
        supervisor = await self._supervisor("start", name)
        if self.cluster is not None:
            document = await self._db(documents.stored_document, self.catalog, name)
            await self.cluster.share_keys([a.name for a in document.assemblies])
        await self._db(runstate.prepare_start, self.catalog, name)
        if self.cluster is not None and self.cluster.elsewhere(name):
            return {"deployable": name, "desired": "started", **await self.cluster.start(name)}
        answer = await _within(supervisor.start(name), START_WAIT)
        if answer is None:
            answer = {"pid": None, "note": "the DPE is being started: see status"}
        return {"deployable": name, "desired": "started", **answer}

    async def stop_request(
        self, name: str, wait: float | None = None, kill_after: float | None = None
    ) -> Answer:
        """``POST .../stop``: 200 once stopped, 202 while it goes on after ``wait``."""
        answer, done = await self.stop(name, STOP_WAIT if wait is None else wait, kill_after)
        return Answer(answer, 200 if done else 202)

    async def stop(
        self, name: str, wait: float = STOP_WAIT, kill_after: float | None = None
    ) -> tuple[dict[str, Any], bool]:
        """The answer, and whether the stop is complete."""
        supervisor = await self._supervisor("stop", name)
        document = await self._db(documents.stored_document, self.catalog, name)
        await self._db(runstate.want_stopped, self.catalog, name)
        deadline = kill_after if kill_after is not None else default_kill_after(document)
        base = {"deployable": name, "desired": "stopped"}
        if self.cluster is not None and self.cluster.elsewhere(name):
            return self._stopped_elsewhere(base, await self.cluster.stop(name, wait), wait)
        began = time.monotonic()
        if not supervisor.info(name)["alive"]:
            # no DPE: "do not wait" still gives the supervisor a moment, so that one
            # with nothing to stop is answered stopped (200), not "still stopping" (202)
            wait = max(wait, SETTLE)
        answer = await _within(supervisor.stop(name, deadline), wait)
        if answer and answer.get("elsewhere") and self.cluster is not None:
            # handed over meanwhile: the other member gets what is left of the one wait
            left = max(0.0, wait - (time.monotonic() - began))
            return self._stopped_elsewhere(base, await self.cluster.stop(name, left), wait)
        if answer is None:
            note = f"still stopping after {wait:g} s (killed after {deadline:g} s): see status"
            return {**base, "state": "stopping", "note": note}, False
        return {**base, "state": "stopped", "dpe": answer}, True

    def _stopped_elsewhere(
        self, base: dict[str, Any], answer: dict[str, Any] | None, wait: float
    ) -> tuple[dict[str, Any], bool]:
        if answer is None:
            note = f"still stopping after {wait:g} s (another member stops it): see status"
            return {**base, "state": "stopping", "note": note}, False
        return {**base, "state": "stopped", "dpe": answer}, True

    async def reload(self, name: str) -> dict[str, Any]:
        supervisor = await self._supervisor("reload", name)
        await self._db(runstate.runnable_document, self.catalog, name)
        if await self._db(runstate.desired_state, self.catalog, name) != "started":
            raise Conflict(
                f"deployable {name!r} is not started: nothing to reload", deployable=name
            )
        if self.cluster is not None and self.cluster.elsewhere(name):
            return {"deployable": name, **await self.cluster.reload(name)}
        return {"deployable": name, **supervisor.reload(name)}

    async def tell_requests(self, name: str) -> str | None:
        """Have a started deployable's DPE read the requests recorded for it (a service
        move), what will happen in a few words; None when it is not started (its next DPE
        reads them).  Not a reload: that would also apply the changes waiting for one."""
        supervisor = await self._supervisor("request", name)
        if await self._db(runstate.desired_state, self.catalog, name) != "started":
            return None
        if self.cluster is not None and self.cluster.elsewhere(name):
            return await self.cluster.tell_requests(name)
        return supervisor.tell_requests(name)

    async def delete(self, name: str, force: bool = False) -> None:
        running = force and self.supervisor is not None
        if running and await self._db(runstate.is_running, self.catalog, name):
            await self._stop_before_delete(name)
        await self._db(deployables.delete, self.catalog, name, force)

    async def _stop_before_delete(self, name: str) -> None:
        answer, stopped = await self.stop(name, FORCE_WAIT, FORCE_KILL_AFTER)
        if not stopped:
            raise Conflict(
                f"deployable {name!r} is still stopping after {FORCE_WAIT:g} s: not deleted"
                " yet (delete it again once it has stopped)",
                deployable=name,
            )
        left = answer["dpe"].get("left")
        if left:
            raise Conflict(
                f"deployable {name!r} could not be stopped: instances of {', '.join(left)}"
                " are left; not deleted",
                deployable=name,
            )

    async def status(self, name: str) -> dict[str, Any]:
        record: StatusRecord = await self._db(read_status, self.catalog.store, name)
        dpe = self.supervisor.info(name) if self.supervisor else {"pid": None, "alive": False}
        status = compose_status(record, dpe, self.clock())
        if self.cluster is not None and self.cluster.several():
            holder = status["dpe"].get("lease_holder") if status["dpe"].get("alive") else None
            status["dpe"]["member"] = self.cluster.member_running(holder, name)
        return status

    async def _supervisor(self, action: str, name: str) -> Supervisor:
        """The supervisor, once the deployable is known to exist (404 first)."""
        await self._db(runstate.desired_state, self.catalog, name)
        if self.supervisor is None:
            raise Unavailable(f"{action}: this API runs without a DPE supervisor")
        return self.supervisor

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        result: T = await self._in_store(fn, *args)
        return result


def default_kill_after(document: Deployable) -> float:
    """How long a DPE may take to stop the deployable before it is killed."""
    stops = sum(r.timeout("stop") for a in document.assemblies for r in a.resources)
    return STOP_MARGIN + stops


async def _within(future: asyncio.Future[T], seconds: float) -> T | None:
    """The future's result, or None after ``seconds`` (the future goes on)."""
    try:
        return await asyncio.wait_for(asyncio.shield(future), seconds)
    except TimeoutError:
        return None
