"""The engine with a driver that reports instance deaths (an ``InstanceWatcher``),
and heartbeat defaults offered by the driver."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from dpe.interfaces import InstanceState
from foundation.model import Deployable, Heartbeat, parse
from tests.unit.fakes import FakeDriver, Harness, WatchingFakeDriver, settle

# so long that only an event can explain a failure while a test looks
PATIENT = {"interval": 1, "timeout": 600, "health_interval": 600}


def deployable(heartbeat: dict[str, Any] | None = None) -> Deployable:
    doc: dict[str, Any] = {
        "name": "dep",
        "assemblies": [
            {"name": "a1", "resources": [{"name": "x", "type": "Dummy", "monitor_interval": 1}]},
            {"name": "a2", "resources": [{"name": "y", "type": "Dummy", "monitor_interval": 1}]},
        ],
    }
    if heartbeat is not None:
        doc["heartbeat"] = heartbeat
    return parse(doc)


async def running(h: Harness, doc: Deployable) -> None:
    await h.start(doc)
    await h.until_state("dep", "running", within=30)


def watching(h: Harness) -> WatchingFakeDriver:
    assert isinstance(h.driver, WatchingFakeDriver)
    return h.driver


def failures(h: Harness, since: int) -> list[str]:
    """The failures of assemblies and resources (not the deployable's recovering)."""
    return [line for line in h.story(since=since) if line.split(" ", 1)[1].startswith("failed: ")]


# ---------------------------------------------------------------------------
# instance events


async def test_a_stopped_event_fails_the_assembly_at_once_and_it_is_recreated() -> None:
    h = Harness(driver=WatchingFakeDriver)
    await running(h, deployable(PATIENT))
    driver = watching(h)
    mark, at = len(h.events), h.clock.now
    old = driver.crash("a1")
    await settle()
    assert h.clock.now == at  # no heartbeat timer fired: the event alone did it
    assert failures(h, mark)[0] == f"a1 failed: instance {old} stopped (fake-watching event)"
    await h.until(lambda: h.state("dep") == "running" and len(driver.created) == 3, within=30)
    assert driver.destroyed == [old]  # fenced once
    new = h.world.guest("a1").instance.instance_id
    assert new != old
    assert [f for f in failures(h, mark) if f.startswith("a1 ")] == [
        f"a1 failed: instance {old} stopped (fake-watching event)"
    ]
    assert h.state("a2/y") == "running"
    assert h.world.violations == []


async def test_the_new_instance_is_probed_then_started() -> None:
    h = Harness(driver=WatchingFakeDriver)
    await running(h, deployable(PATIENT))
    ops_mark = len(h.world.ops)
    watching(h).crash("a1")
    await h.until_state("dep", "running", within=30)
    new = h.world.guest("a1").instance.instance_id
    on_new = [o.op for o in h.world.ops[ops_mark:] if o.instance == new and o.resource == "x"]
    assert on_new[:2] == ["probe", "start"]


async def test_a_gone_event_fails_the_assembly_even_while_its_guest_still_answers() -> None:
    h = Harness(driver=WatchingFakeDriver)
    await running(h, deployable(PATIENT))
    mark = len(h.events)
    current = h.world.guest("a2").instance.instance_id
    watching(h).report(current, InstanceState.GONE)
    await settle()
    assert failures(h, mark) == [f"a2 failed: instance {current} gone (fake-watching event)"]
    await h.until_state("dep", "running", within=30)
    assert watching(h).destroyed == [current]


async def test_events_for_other_instances_or_live_states_are_ignored() -> None:
    h = Harness(driver=WatchingFakeDriver)
    await running(h, deployable(PATIENT))
    driver = watching(h)
    old = driver.crash("a1")
    await h.until(lambda: h.state("dep") == "running" and len(driver.created) == 3, within=30)
    mark = len(h.events)
    driver.report(old, InstanceState.STOPPED)  # the instance the engine replaced
    driver.report(old, InstanceState.GONE)
    driver.report("someone-else-7", InstanceState.STOPPED)
    driver.report(h.world.guest("a2").instance.instance_id, InstanceState.RUNNING)
    await h.clock.advance(5)
    assert failures(h, mark) == []
    assert driver.destroyed == [old]
    assert h.state("dep") == "running"


async def test_events_are_ignored_once_the_assembly_already_failed() -> None:
    h = Harness(driver=WatchingFakeDriver)
    await running(h, deployable(PATIENT))
    driver = watching(h)
    mark = len(h.events)
    old = driver.crash("a1")
    driver.report(old, InstanceState.GONE)  # repeated: the same death
    await settle()
    assert len([f for f in failures(h, mark) if f.startswith("a1 ")]) == 1
    await h.until_state("dep", "running", within=30)
    assert driver.destroyed == [old]


async def test_the_watch_is_opened_once_and_closed_on_shutdown() -> None:
    h = Harness(driver=WatchingFakeDriver)
    await running(h, deployable(PATIENT))
    driver = watching(h)
    assert len(driver.watches) == 1 and not driver.watches[0].closed
    assert h.engine is not None
    await h.engine.shutdown()
    assert driver.watches[0].closed
    assert driver.closed == 1  # its connection too
    assert driver.destroyed == []  # shutdown leaves the instances running


async def test_the_watch_is_closed_on_stop() -> None:
    h = Harness(driver=WatchingFakeDriver)
    await running(h, deployable(PATIENT))
    assert h.engine is not None
    stopping = asyncio.ensure_future(h.engine.stop())
    await h.until(stopping.done, within=60)
    await stopping
    assert watching(h).watches[0].closed
    assert watching(h).closed == 1
    assert h.state("dep") == "stopped"


async def test_a_driver_without_watch_is_not_subscribed() -> None:
    h = Harness()
    await running(h, deployable(PATIENT))
    assert not hasattr(h.driver, "watch")
    assert h.engine is not None
    await h.engine.shutdown()


# ---------------------------------------------------------------------------
# heartbeat defaults from the driver

# a timeout shorter than the monitors' (20 s), so the heartbeat is what fails first
SLOW = Heartbeat(interval=2.0, timeout=12.0, health_interval=60.0)


def with_defaults(heartbeat: Heartbeat | None) -> Any:
    return partial(WatchingFakeDriver, heartbeat_defaults=heartbeat)


async def test_a_document_without_heartbeat_gets_the_drivers_defaults() -> None:
    h = Harness(driver=with_defaults(SLOW))
    await running(h, deployable())
    assert h.engine is not None
    assert h.engine.heartbeat() == SLOW
    h.world.freeze_instance("a1")
    frozen_at = h.clock.now
    mark = len(h.events)
    await h.until(lambda: failures(h, mark) != [], within=60)
    assert failures(h, mark)[0].startswith("a1 failed: no heartbeat for ")
    assert h.clock.now - frozen_at > Heartbeat().timeout + Heartbeat().interval


async def test_a_document_that_sets_its_heartbeat_keeps_it() -> None:
    h = Harness(driver=with_defaults(SLOW))
    await running(h, deployable({"interval": 1, "timeout": 5, "health_interval": 10}))
    assert h.engine is not None
    assert h.engine.heartbeat() == Heartbeat(1.0, 5.0, 10.0)


async def test_the_model_defaults_stand_without_driver_defaults() -> None:
    for driver in (FakeDriver, with_defaults(None)):
        h = Harness(driver=driver)
        engine = h.new_engine(deployable())
        assert engine.heartbeat() == Heartbeat()


async def test_a_reload_that_sets_a_heartbeat_replaces_the_drivers_defaults() -> None:
    h = Harness(driver=with_defaults(SLOW))
    await running(h, deployable())
    assert h.engine is not None
    await h.engine.reload(deployable({"interval": 1, "timeout": 4}))
    assert h.engine.heartbeat() == Heartbeat(1.0, 4.0, 10.0)
    await h.engine.reload(deployable())
    assert h.engine.heartbeat() == SLOW


# ---------------------------------------------------------------------------
# notices: what a driver has to say that is no instance's death


class NotifyingFakeDriver(WatchingFakeDriver):
    """Also a ``Notifying`` driver (as openstack's is: its API unreachable, uploads)."""

    def set_notice(self, notice: Any) -> None:
        self.notice = notice


async def test_a_driver_s_notice_is_an_event_of_the_deployable_and_fails_nothing() -> None:
    h = Harness(driver=NotifyingFakeDriver)
    await running(h, deployable(PATIENT))
    driver = h.driver
    assert isinstance(driver, NotifyingFakeDriver)
    mark = len(h.events)
    driver.notice("the cloud's API does not answer")
    assert h.story(since=mark) == ["dep running: the cloud's API does not answer"]
    assert h.state("dep") == "running"


class SlowListingFakeDriver(WatchingFakeDriver):
    """Lists its instances in 20 s, four times the lease's ttl (a cloud under load),
    noting whether the lease was still unexpired when the listing ended."""

    lease_live_after_list: bool | None = None
    runtime: Any = None

    async def list(self, deployable: str) -> list[Any]:
        await self.world.clock.sleep(20.0)
        lease = self.runtime.lease
        self.lease_live_after_list = lease.expires_at > self.world.clock.time()
        return await super().list(deployable)


async def test_the_lease_is_renewed_while_a_slow_driver_lists_the_instances() -> None:
    """cped's supervisor kills a DPE whose lease expires: it must not, during start."""
    h = Harness(driver=SlowListingFakeDriver)
    engine = h.new_engine(deployable(PATIENT))
    driver = h.driver
    assert isinstance(driver, SlowListingFakeDriver)
    driver.runtime = h.runtime
    starting = asyncio.ensure_future(engine.start())
    await h.until(starting.done, within=60)
    await starting
    assert driver.lease_live_after_list is True
    await h.until_state("dep", "running", within=60)
