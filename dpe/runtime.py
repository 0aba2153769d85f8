"""What a DPE records as it runs, behind one small seam.

The engine writes free-form JSON documents keyed by ``(kind, key)`` as things
change -- instances, resource states and last rc, failure windows, the
deployable's state -- appends events, and holds the deployable's lease.
``StoreRuntime`` keeps them in the shared store (so a replacement DPE adopts
and windows continue); ``MemoryRuntime`` keeps them in a dict (tests, and
``dped --document``).  Both are synchronous: a write is one small
transaction, and keeping it on the loop keeps events in order.

Once it holds the lease, every write names it (``Fence``: holder and epoch):
the store refuses it with ``LeaseLost`` when the epoch has moved on, so a DPE
that lost its lease changes nothing even before it notices.  With
``store_clock`` the store's clock judges the lease (several members: one
clock), not the ``now`` the engine passes.

``StoreRuntime`` also tells cped, by a wake-up (``foundation.wakeup``), when it
has committed an event or taken or given up the lease, so that cped need not
poll the store for them (on PostgreSQL the store also tells every member, by a
notification at commit: ``foundation.store_pg``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from typing import Any, Protocol

from foundation.errors import LeaseLost
from foundation.events import Event
from foundation.runtime_kinds import Docs
from foundation.store import Fence, Store
from foundation.wakeup import EVENT, LEASE

Wake = Callable[[str, str], None]  # (kind, deployable): tell cped, never block
Patience = Callable[[], AbstractContextManager[None]]  # around a store call that may wait


def _no_wake(kind: str, deployable: str) -> None:
    return None


class Runtime(Protocol):
    deployable: str

    def load(self) -> Docs: ...

    def put(self, kind: str, key: str, doc: dict[str, Any]) -> None: ...

    def delete(self, kind: str | None = None, key: str | None = None) -> None:
        """One entry, one kind, or (no arguments) everything of the deployable."""
        ...

    def append_event(self, event: Event) -> Event: ...

    def acquire_lease(self, holder: str, pid: int, ttl: float, now: float) -> int | None:
        """The epoch if the lease was free, expired or already ours; else None."""
        ...

    def renew_lease(self, holder: str, epoch: int, ttl: float, now: float) -> bool: ...

    def release_lease(self, holder: str, epoch: int) -> None: ...


class StoreRuntime:
    """The runtime of one deployable in the shared store.

    ``patience`` surrounds every store call: a call that may rightly wait
    (SQLite's writer lock, held by another process of the host) tells the
    fencing watchdog so (``dpe.fencing``).
    """

    def __init__(
        self,
        store: Store,
        deployable: str,
        wake: Wake = _no_wake,
        *,
        store_clock: bool = False,
        patience: Patience = nullcontext,
    ) -> None:
        self.store = store
        self.deployable = deployable
        self.wake = wake
        self.store_clock = store_clock
        self.patience = patience
        self.fence: Fence | None = None  # the lease held, once acquired

    def load(self) -> Docs:
        with self.patience():
            return self.store.get_runtime(self.deployable)

    def put(self, kind: str, key: str, doc: dict[str, Any]) -> None:
        with self.patience():
            self.store.put_runtime(self.deployable, kind, key, doc, fence=self.fence)

    def delete(self, kind: str | None = None, key: str | None = None) -> None:
        with self.patience():
            self.store.delete_runtime(self.deployable, kind, key, fence=self.fence)

    def append_event(self, event: Event) -> Event:
        with self.patience():
            stored = self.store.append_event(event, fence=self.fence)
        self.wake(EVENT, self.deployable)
        return stored

    def acquire_lease(self, holder: str, pid: int, ttl: float, now: float) -> int | None:
        with self.patience():
            epoch = self.store.acquire_lease(self.deployable, holder, pid, ttl, self._now(now))
        if epoch is not None:
            self.fence = Fence(holder, epoch)
            self.wake(LEASE, self.deployable)
        return epoch

    def renew_lease(self, holder: str, epoch: int, ttl: float, now: float) -> bool:
        with self.patience():
            return self.store.renew_lease(self.deployable, holder, epoch, ttl, self._now(now))

    def release_lease(self, holder: str, epoch: int) -> None:
        with self.patience():
            self.store.release_lease(self.deployable, holder, epoch)
        if self.fence == Fence(holder, epoch):
            self.fence = None
        self.wake(LEASE, self.deployable)

    def _now(self, now: float) -> float | None:
        return None if self.store_clock else now


@dataclass
class Lease:
    holder: str | None
    pid: int | None
    epoch: int
    expires_at: float


class MemoryRuntime:
    """The same contract in memory; several engines may share one (adoption tests)."""

    def __init__(self, deployable: str) -> None:
        self.deployable = deployable
        self.docs: Docs = {}
        self.events: list[Event] = []
        self.lease: Lease | None = None
        self.fence: Fence | None = None  # the lease the writer holds, as the store checks it

    def load(self) -> Docs:
        return copy.deepcopy(self.docs)

    def put(self, kind: str, key: str, doc: dict[str, Any]) -> None:
        self._check_fence()
        self.docs.setdefault(kind, {})[key] = copy.deepcopy(doc)

    def _check_fence(self) -> None:
        lease, fence = self.lease, self.fence
        if fence is not None and (lease is None or (lease.holder, lease.epoch) != fence_key(fence)):
            raise LeaseLost(f"the lease of {self.deployable} (epoch {fence.epoch}) is lost")

    def delete(self, kind: str | None = None, key: str | None = None) -> None:
        self._check_fence()
        if kind is None:
            self.docs.clear()
        elif key is None:
            self.docs.pop(kind, None)
        else:
            self.docs.get(kind, {}).pop(key, None)

    def append_event(self, event: Event) -> Event:
        self._check_fence()
        stored = replace(event, id=len(self.events) + 1)
        self.events.append(stored)
        return stored

    def acquire_lease(self, holder: str, pid: int, ttl: float, now: float) -> int | None:
        lease = self.lease
        if lease is not None and lease.holder == holder:
            lease.expires_at = now + ttl
            self.fence = Fence(holder, lease.epoch)
            return lease.epoch
        if lease is not None and lease.holder is not None and lease.expires_at > now:
            return None
        epoch = lease.epoch + 1 if lease else 1
        self.lease = Lease(holder, pid, epoch, now + ttl)
        self.fence = Fence(holder, epoch)
        return epoch

    def renew_lease(self, holder: str, epoch: int, ttl: float, now: float) -> bool:
        lease = self.lease
        if (
            lease is None
            or (lease.holder, lease.epoch) != (holder, epoch)
            or lease.expires_at <= now
        ):
            return False
        lease.expires_at = now + ttl
        return True

    def release_lease(self, holder: str, epoch: int) -> None:
        lease = self.lease
        if lease is not None and (lease.holder, lease.epoch) == (holder, epoch):
            self.lease = Lease(None, None, lease.epoch, 0.0)
            self.fence = None


def fence_key(fence: Fence) -> tuple[str | None, int]:
    return fence.holder, fence.epoch
