"""A guest that presents another SSH host key than the pinned one is treated
as failed, never trusted: no command ever runs on it, the rest of the
deployable keeps running, and the reason names the host key."""

from __future__ import annotations

from dpe.interfaces import Instance
from foundation.errors import Forbidden
from foundation.keyfiles import AssemblyKeys
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


async def test_a_guest_with_another_host_key_is_failed_fenced_and_never_used() -> None:
    h = Harness()
    h.transport = ImpostorTransport(h.world)
    await h.start(TWO)
    await h.until(lambda: len(h.transport.refused) >= 3 and h.state("a2/z") == "running")
    story = h.story("a1")
    assert (
        "a1 failed: bringing up an instance failed: a1: host key does not match"
        " the pinned key" in story
    )
    assert not [line for line in story if line.startswith("a1 running")]
    assert not [line for line in h.story("a1/x") if "start" in line.split(":")[0]]
    assert all(c.guest.assembly != "a1" for c in h.transport.connections)  # never connected
    # every refused instance but the newest is already destroyed (fenced), none reused
    assert len(set(h.transport.refused)) == len(h.transport.refused)
    assert all(h.world.guests[i].destroyed for i in h.transport.refused[:-1])
    assert h.state("a2") == "running"
