"""A guest that presents another SSH host key than the pinned one is treated
as failed, never trusted: no command ever runs on it, the rest of the
deployable keeps running, and the reason names the host key.  It is not a lost
guest: no failure is counted, and it is neither fenced nor re-created (that
would only meet the same impostor again) until a clean-up asks for it."""

from __future__ import annotations

from dpe.interfaces import Instance
from foundation.errors import Forbidden
from foundation.keyfiles import AssemblyKeys
from foundation.runtime_kinds import CLEANUP
from tests.unit.fakes import FakeConnection, FakeTransport, FakeWorld, Harness
from tests.unit.test_engine import TWO


class ImpostorTransport(FakeTransport):
    """a1's instances present a host key that is not the pinned one."""

    def __init__(self, world: FakeWorld) -> None:
        super().__init__(world)
        self.refused: list[str] = []

    async def connect(
        self, instance: Instance, keys: AssemblyKeys, timeout: float
    ) -> FakeConnection:
        if instance.assembly == "a1":
            self.refused.append(instance.instance_id)
            raise Forbidden(f"{instance.assembly}: host key does not match the pinned key")
        return await super().connect(instance, keys, timeout)


async def test_a_guest_with_another_host_key_is_failed_left_alone_and_never_used() -> None:
    h = Harness()
    impostor = ImpostorTransport(h.world)
    h.transport = impostor
    await h.start(TWO)
    await h.until(lambda: h.state("a1") == "failed" and h.state("a2/z") == "running")
    await h.clock.advance(60)  # no re-create loop: time changes nothing
    story = h.story("a1")
    assert story[-1] == (
        "a1 failed: host key mismatch: a1: host key does not match the pinned key; not"
        " trusted, never used: left alone (not fenced, not re-created) until"
        " deployable_cleanup dep a1"
    )
    assert not [line for line in story if "connection lost" in line]
    assert not [line for line in story if line.startswith(("a1 running", "a1 fencing"))]
    assert not [line for line in h.story("a1/x") if "start" in line.split(":")[0]]
    assert all(c.guest.assembly != "a1" for c in impostor.connections)  # never connected
    assert len(impostor.refused) == 1 and len(h.driver.created) == 2  # one instance each
    assert h.driver.destroyed == []
    assert h.state("a2") == "running"
    assert h.state("dep") != "running"  # not all of it runs
    assert h.runtime is not None
    assert h.runtime.docs["assembly"]["a1"]["state"] == "failed"
    assert h.runtime.docs["assembly"]["a1"]["reason"].startswith("host key mismatch: ")
    assert h.runtime.docs["assembly"]["a1"]["failures"] == []  # not a failure of the guest

    # cleaned up: the instance is fenced and made again (and refused again, once)
    assert h.engine is not None
    h.runtime.put(CLEANUP, "a1", {"requested_at": 1.0})
    h.engine.take_requests()
    await h.until(lambda: len(impostor.refused) == 2 and h.state("a1") == "failed")
    await h.clock.advance(60)
    assert len(impostor.refused) == 2 and len(h.driver.destroyed) == 1
