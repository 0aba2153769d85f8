"""A stop through a member whose own supervisor finds, part way, that another member
runs the deployable (the members changed meanwhile): the wait asked for is the whole
wait, not once here and once more for the other member."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from cpe.catalog import Catalog, deployables
from cpe.lifecycle import Lifecycle
from foundation.store import Store
from tests.unit.inprocess import FakeSupervisor, _direct

HANDED_OVER_AFTER = 0.3  # how long this member's own stop goes on before "elsewhere"


class HandedOverSupervisor(FakeSupervisor):
    """This member ran it when the stop came; another one does by the time it settles."""

    def stop(self, name: str, kill_after: float | None = None) -> asyncio.Future[Any]:
        self.calls.append(f"stop {name}")
        future = asyncio.get_running_loop().create_future()
        answer = {"pid": None, "elsewhere": True, "note": "another member runs it", "left": []}
        asyncio.get_running_loop().call_later(HANDED_OVER_AFTER, future.set_result, answer)
        return future


class StillStoppingElsewhere:
    """The cluster of members, as the lifecycle asks it: the owner never finishes."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def elsewhere(self, name: str) -> bool:
        return False  # not yet, when the stop arrived

    async def stop(self, name: str, wait: float) -> dict[str, Any] | None:
        self.waits.append(wait)
        await asyncio.sleep(wait)
        return None


async def test_a_stop_handed_over_part_way_waits_only_what_is_left(store: Store) -> None:
    catalog = Catalog(store)
    deployables.create(catalog, {"name": "shop"})
    cluster = StillStoppingElsewhere()
    lifecycle = Lifecycle(catalog, HandedOverSupervisor(), _direct, cluster=cluster)  # type: ignore[arg-type]  # fakes
    began = time.monotonic()
    answer, done = await lifecycle.stop("shop", wait=1.0)
    took = time.monotonic() - began
    assert not done and answer["state"] == "stopping"
    assert len(cluster.waits) == 1 and cluster.waits[0] <= 1.0 - HANDED_OVER_AFTER + 0.05
    assert took < 1.2, f"waited {took:.2f} s for a 1 s wait"
