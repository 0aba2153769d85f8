"""The engine with fakes: failure detection, escalation level by level, hard
errors, reload, adoption, the lease, stop and shutdown."""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Iterator
from typing import Any

import pytest

from dpe.interfaces import InstanceState
from dpe.runtime import MemoryRuntime
from foundation.errors import Conflict
from foundation.model import Deployable, parse
from tests.unit.fakes import HANG, Harness, Slow, monitoring_mode, settle

HEARTBEAT = {"interval": 1, "timeout": 3, "health_interval": 5}


@pytest.fixture(autouse=True, params=["active", "passive"])
def monitoring(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test here runs in both monitoring modes."""
    with monitoring_mode(request.param):
        yield request.param


def resource(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "Dummy", "monitor_interval": 1} | extra


def deployable(
    assemblies: dict[str, list[dict[str, Any]]],
    constraints: list[tuple[str, str]] = (),  # type: ignore[assignment]
    **extra: Any,
) -> Deployable:
    escalations = extra.pop("assembly_escalation", {})
    return parse(
        {
            "name": "dep",
            "heartbeat": HEARTBEAT,
            "assemblies": [
                {"name": name, "resources": rs, "escalation": escalations.get(name, {})}
                for name, rs in assemblies.items()
            ],
            "constraints": [{"first": f, "then": t} for f, t in constraints],
            **extra,
        }
    )


TWO = deployable(
    {"a1": [resource("x")], "a2": [resource("y"), resource("z")]},
    [("a1/x", "a2/y")],
)


async def running(h: Harness, doc: Deployable = TWO, **kwargs: Any) -> None:
    await h.start(doc, **kwargs)
    await h.until_state("dep", "running", within=30)


# ---------------------------------------------------------------------------
# detecting failures


async def test_a_frozen_sshd_fails_its_assembly_after_the_heartbeat_timeout() -> None:
    h = Harness()
    await running(h)
    h.world.freeze_instance("a2")
    frozen_at = h.clock.now
    failed = await h.until_event_starting("a2 failed: no heartbeat for 3.0 s (", within=10)
    assert failed.endswith("loop lag 0.0 s; fresh keepalive: no answer within 1 s)")
    assert h.clock.now - frozen_at <= 3 + 1  # the timeout, then a fresh keepalive's interval
    await h.until(lambda: h.state("dep") == "running" and len(h.driver.created) == 3)
    assert h.state("a1/x") == "running"
    assert h.world.violations == []


async def test_a_held_up_engine_does_not_blame_the_guest_for_its_own_silence() -> None:
    h = Harness()
    await running(h)
    for assembly in ("a1", "a2"):
        h.world.guest(assembly).latency = 0.05
    h.clock.now += 10  # the loop was held up (say, a store write waiting for a lock)
    await h.clock.advance(5)
    assert [line for line in h.story() if " failed" in line] == []
    assert h.driver.destroyed == []


async def test_a_hanging_agent_is_failed_by_its_timeout_and_restarted() -> None:
    doc = deployable({"a1": [resource("x", timeouts={"monitor": "2s"})]})
    h = Harness()
    await running(h, doc)
    h.world.script("a1", "x", "monitor", HANG)
    mark = len(h.events)
    await h.until(lambda: "a1/x failed: monitor timed out after 2 s" in h.story(since=mark))
    await h.until_state("dep", "running")
    ops = h.world.ops_of("a1/x")
    assert ops[ops.index("stop") - 1 :][:3] == ["monitor", "stop", "start"]
    assert h.driver.destroyed == []


async def test_the_driver_reporting_the_instance_gone_fails_the_assembly() -> None:
    h = Harness()
    await running(h)
    guest = h.world.guest("a1")
    guest.destroyed = True  # gone behind our back; the connection still answers
    await h.until_event("a1 failed: the fake driver reports the instance gone", within=10)


@pytest.mark.parametrize("monitoring", ["passive"])  # with the agent, no health command
async def test_a_failing_health_command_fails_the_assembly(monitoring: str) -> None:
    h = Harness(monitoring=monitoring)
    await running(h)
    h.world.guest("a2").health_status = 1
    await h.until_event("a2 failed: health command 'uptime' exited with 1", within=10)


@pytest.mark.parametrize("monitoring", ["active"])
async def test_with_the_guest_agent_no_health_command_runs_the_driver_is_still_asked(
    monitoring: str,
) -> None:
    h = Harness(monitoring=monitoring)
    await running(h)
    guest = h.world.guest("a2")
    guest.health_status = 1  # would fail the assembly if it ran
    await h.clock.advance(30)
    assert guest.health_commands == 0 and h.state("a2") == "running"
    guest.destroyed = True
    await h.until_event("a2 failed: the fake driver reports the instance gone", within=10)


async def test_hard_errors_make_a_resource_unrecoverable_and_the_rest_keeps_running() -> None:
    h = Harness()
    h.world.overrides[("a1", "x", "start")] = 5  # not installed
    await h.start(TWO)
    await h.until_state("a1/x", "unrecoverable", within=30)
    await h.until_state("dep", "running")
    story = h.story()
    assert "a1/x unrecoverable: start returned 5 (not installed)" in story
    assert "a2/y stopped: cannot start: depends on a1/x, which is unrecoverable" in story
    assert h.state("a2/z") == "running"
    assert story[-1] == (
        "dep running: 2 assemblies running, 1 resource running, 1 unrecoverable, 1 cannot start"
    )
    starts = h.world.ops_of("a1/x").count("start")
    await h.clock.advance(30)
    assert h.world.ops_of("a1/x").count("start") == starts  # left alone
    assert h.state("a2/z") == "running"


async def test_a_monitor_answering_during_a_stop_does_not_judge_the_resource() -> None:
    doc = deployable({"a1": [resource("x", timeouts={"monitor": "5s", "stop": "5s"})]})
    h = Harness()
    await running(h, doc)
    # a monitor is in flight and will say "failed" (the daemon half stopped)...
    h.world.script("a1", "x", "monitor", Slow(2.0, 1))
    h.world.script("a1", "x", "stop", Slow(3.0, 0))
    await h.clock.advance(1.5)
    changed = deployable(
        {"a1": [resource("x", timeouts={"monitor": "5s", "stop": "5s"}, parameters={"p": "2"})]}
    )
    assert h.engine is not None
    await h.reload(changed)  # ...when a restart stops the resource
    await h.clock.advance(20)
    assert [line for line in h.story() if "failed" in line] == []
    assert h.state("a1/x") == "running"
    assert [op for op in h.world.ops_of("a1/x") if op != "monitor"] == [
        "probe",
        "start",
        "stop",
        "start",
    ]


async def test_a_start_that_keeps_failing_is_retried_with_growing_delays() -> None:
    h = Harness()
    h.world.overrides[("a1", "x", "start")] = 1
    await h.start(deployable({"a1": [resource("x")]}))
    await h.clock.advance(60)
    starts = [o.time for o in h.world.ops if o.op == "start"]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert 5 <= len(starts) <= 12  # not a busy loop, not given up
    assert gaps[-1] > gaps[0]
    assert gaps[-1] <= 30.0 + 1


async def test_a_stop_that_fails_gets_its_assembly_fenced() -> None:
    h = Harness()
    await running(h)
    h.world.script("a2", "z", "monitor", 7)
    h.world.script("a2", "z", "stop", 1)
    await h.until(lambda: len(h.driver.destroyed) == 1)
    assert "a2 failed: stop of z failed (stop returned 1 (unknown error))" in h.story()
    await h.until_state("dep", "running")
    assert h.world.violations == []


async def test_resources_restarted_as_a_consequence_say_why() -> None:
    doc = deployable(
        {"a1": [resource("x")], "a2": [resource("y"), resource("z")]},
        [("a1/x", "a2/y"), ("a2/y", "a2/z")],
    )
    h = Harness()
    await running(h, doc)
    mark = len(h.events)
    h.world.kill_resource("a1", "x")
    await h.until(lambda: h.state("dep") == "running" and len(h.story(since=mark)) > 8)
    await h.until_state("dep", "running")
    story = h.story(since=mark)
    because = "restarting because a1/x failed (order a1/x then a2/y"
    assert f"a2/y stopping: stopping: {because})" in story
    assert f"a2/z stopping: stopping: {because}, a2/y then a2/z)" in story
    assert f"a2/y starting: starting (ocf:heartbeat:Dummy): {because})" in story
    assert f"a2/z starting: starting (ocf:heartbeat:Dummy): {because}, a2/y then a2/z)" in story
    assert "a1/x stopping: stopping" in story  # the failed one: its own failure, no cause
    assert "a1/x starting: starting (ocf:heartbeat:Dummy)" in story


# ---------------------------------------------------------------------------
# escalation, level by level


async def test_assembly_escalation_restarts_the_whole_deployable() -> None:
    doc = deployable(
        {"a1": [resource("x")], "a2": [resource("y")]},
        [("a1/x", "a2/y")],
        assembly_escalation={"a1": {"failures": 2, "period": 60}},
    )
    h = Harness()
    await running(h, doc)
    h.world.kill_instance("a1")  # first failure: re-create a1 only
    await h.until(lambda: len(h.driver.created) == 3 and h.state("dep") == "running")
    assert len(h.driver.destroyed) == 1
    healthy = h.world.guest("a2").instance.instance_id
    mark = len(h.events)
    h.world.kill_instance("a1")  # second within 60 s: restart everything
    await h.until(lambda: healthy in h.driver.destroyed)
    await h.until_state("dep", "running")
    story = h.story(since=mark)
    assert (
        "dep recovering: assembly a1: 2 failures in 60 s: escalating to deployable:"
        " restarting every assembly" in story
    )
    assert story.index("a2/y stopped: stopped") < story.index(
        "a2 stopped: " + f"instance {healthy} destroyed"
    )
    assert len(h.driver.created) == 5
    assert h.world.violations == []


async def test_deployable_escalation_marks_it_failed_and_recovery_stops() -> None:
    doc = deployable(
        {"a1": [resource("x")]},
        assembly_escalation={"a1": {"failures": 1, "period": 60}},
        escalation={"failures": 2, "period": 600},
    )
    h = Harness()
    await running(h, doc)
    h.world.kill_instance("a1")  # escalates at once: deployable restart (1 of 2)
    await h.until(lambda: len(h.driver.created) == 2 and h.state("dep") == "running")
    h.world.kill_instance("a1")  # escalates again: 2 deployable failures in 600 s
    await h.until_state("dep", "failed")
    assert h.story()[-2:] == [  # the assembly's step is told when it happens
        "dep recovering: assembly a1: 1 failure in 60 s: escalating to deployable",
        "dep failed: 2 failures in 600 s: no more recovery until it is started again",
    ]
    created = len(h.driver.created)
    await h.clock.advance(60)
    assert len(h.driver.created) == created
    assert h.runtime is not None
    assert h.runtime.docs["deployable"][""]["state"] == "failed"


async def test_a_failed_deployable_stays_failed_after_a_restart_until_cleared() -> None:
    runtime = MemoryRuntime("dep")
    runtime.put("deployable", "", {"state": "failed", "reason": "given up", "failures": [1.0]})
    h = Harness(runtime)
    await h.start(TWO)
    await h.clock.advance(10)
    assert h.state("dep") == "failed"
    assert h.driver.created == []
    assert h.engine is not None
    await h.engine.shutdown()
    await h.start(TWO, clear_failed=True)
    await h.until_state("dep", "running")
    assert "dep starting: failed state cleared: starting again" in h.story()


async def test_a_start_that_clears_failed_recovers_what_failed_without_counting_it_again() -> None:
    """The failure that made the deployable fail was counted then: a start that clears
    "failed" recovers the resource still in that state (a stale pidfile: its probe
    says failed until a stop) as new, instead of failing the deployable again."""
    doc = deployable(
        {"a1": [resource("x", escalation={"failures": 1, "period": 60})]},
        assembly_escalation={"a1": {"failures": 1, "period": 300}},
        escalation={"failures": 1, "period": 3600},
    )
    h = Harness()
    await running(h, doc)
    h.world.script("a1", "x", "monitor", *[1] * 50)  # failed, until stopped (below)
    await h.until_state("dep", "failed")
    assert h.engine is not None
    await h.engine.shutdown()
    guest = h.world.guest("a1")
    guest.service("x").script.pop("monitor", None)
    guest.service("x").script["monitor"] = deque([1])  # the stale state, probed once
    await h.start(doc, clear_failed=True)
    await h.until_state("dep", "running")
    assert h.state("a1/x") == "running"
    story = h.story()
    assert "dep starting: failed state cleared: starting again" in story
    assert not any(
        "escalating" in line
        for line in story[story.index("dep starting: failed state cleared: starting again") :]
    )


# ---------------------------------------------------------------------------
# reload


async def test_reload_applies_only_the_difference() -> None:
    h = Harness()
    await running(h)
    engine = h.engine
    assert engine is not None
    changed = deployable(
        {
            "a1": [resource("x"), resource("new")],
            "a2": [resource("y", parameters={"fake": "2"}), resource("z")],
        },
        [("a1/x", "a2/y")],
    )
    mark = len(h.world.ops)
    await h.reload(changed)
    await h.until(lambda: h.state("a1/new") == "running" and h.state("dep") == "running")
    touched = [str(o) for o in h.world.ops[mark:] if o.op != "monitor"]
    assert touched == ["probe a1/new", "stop a2/y", "start a1/new", "start a2/y"] or sorted(
        touched
    ) == sorted(["probe a1/new", "stop a2/y", "start a1/new", "start a2/y"])
    assert [o.params for o in h.world.ops if str(o) == "start a2/y"][-1] == {"fake": "2"}

    removed = deployable({"a1": [resource("x")], "a2": [resource("z")]})
    mark = len(h.world.ops)
    await h.reload(removed)
    await h.until(lambda: "a2/y" not in engine.status()["resources"] and not engine.runners.orphans)
    await h.until_state("dep", "running")
    touched = sorted(str(o) for o in h.world.ops[mark:] if o.op != "monitor")
    assert touched == ["stop a1/new", "stop a2/y"]
    assert h.runtime is not None and "a2/y" not in h.runtime.docs["resource"]


async def test_reload_adds_and_removes_assemblies() -> None:
    h = Harness()
    await running(h)
    engine = h.engine
    assert engine is not None
    old_a2 = h.world.guest("a2").instance.instance_id
    await h.reload(deployable({"a1": [resource("x")], "a3": [resource("w")]}))
    await h.until(lambda: h.state("a3/w") == "running" and "a2" not in engine.runners.assemblies)
    assert old_a2 in h.driver.destroyed
    assert sorted(str(o) for o in h.world.ops if o.op == "stop") == ["stop a2/y", "stop a2/z"]
    assert h.runtime is not None and "a2" not in h.runtime.docs.get("instance", {})


async def test_a_reload_that_adds_parts_says_again_what_runs_once_they_run() -> None:
    h = Harness()
    await running(h)
    assert h.runtime is not None
    assert h.runtime.docs["deployable"][""]["reason"] == "2 assemblies running, 3 resources running"
    await h.reload(
        deployable({"a1": [resource("x")], "a2": [resource("y"), resource("z")], "a3": []})
    )
    await h.until(
        lambda: (
            h.runtime is not None
            and h.runtime.docs["deployable"][""]["reason"]
            == "3 assemblies running, 3 resources running"
        )
    )
    assert h.story("dep")[-1] == "dep running: 3 assemblies running, 3 resources running"


# ---------------------------------------------------------------------------
# adoption and the lease


async def test_a_new_engine_adopts_creates_nothing_and_restarts_nothing() -> None:
    doc = deployable(
        {"a1": [resource("x", escalation={"failures": 2, "period": 600})], "a2": [resource("y")]},
        [("a1/x", "a2/y")],
    )
    h = Harness()
    await running(h, doc)
    h.world.kill_resource("a1", "x")  # one failure recorded before the restart
    await h.until(lambda: h.world.ops_of("a1/x").count("start") == 2)
    await h.until_state("dep", "running")
    assert h.engine is not None
    await h.engine.shutdown()
    instances = {g.instance.instance_id for g in h.world.guests.values()}
    mark = len(h.world.ops)

    await running(h, doc)
    assert {i.instance_id for i in h.driver.created} == instances  # nothing new
    await h.clock.advance(5)
    touched = sorted(str(o) for o in h.world.ops[mark:] if o.op != "monitor")
    assert touched == ["probe a1/x", "probe a2/y"]
    assert h.driver.destroyed == []

    h.world.kill_resource("a1", "x")  # the window continued: second failure escalates
    await h.until(lambda: len(h.driver.destroyed) == 1)
    assert "a1 failed: x: 2 failures in 600 s: escalating to assembly" in h.story()


async def test_adoption_records_an_instance_the_store_never_heard_of() -> None:
    h = Harness()
    await running(h)
    assert h.engine is not None and h.runtime is not None
    await h.engine.shutdown()
    # as if the DPE died between creating the instance and recording it
    h.runtime.docs.get("instance", {}).pop("a1", None)
    await running(h)
    recorded = h.runtime.docs["instance"]["a1"]
    assert recorded["instance_id"] == h.world.guest("a1").instance.instance_id


async def test_adoption_destroys_a_second_instance_of_an_assembly() -> None:
    h = Harness()
    await running(h)
    assert h.engine is not None
    await h.engine.shutdown()
    keys = h.world.guest("a1").instance
    from tests.unit.fakes import fake_keys  # a stray twin, as a crashed create may leave

    twin = await h.driver.create("dep", TWO.assemblies[0], fake_keys("a1"))
    h.world.violations.clear()
    await running(h)
    assert h.driver.destroyed == [twin.instance_id]
    assert h.world.guest("a1").instance == keys


async def test_adoption_replaces_an_instance_found_stopped() -> None:
    h = Harness()
    await running(h)
    assert h.engine is not None
    await h.engine.shutdown()
    dead = h.world.guest("a2").instance.instance_id
    h.world.kill_instance("a2")
    await running(h)
    assert dead in h.driver.destroyed
    assert h.world.guest("a2").instance.instance_id != dead
    assert await h.driver.state(dead) is InstanceState.GONE


async def test_a_second_engine_cannot_take_a_held_lease() -> None:
    h = Harness()
    await running(h)
    rival = h.new_engine(TWO, holder="other:2")
    task = asyncio.create_task(rival.start())
    await h.clock.advance(15)
    with pytest.raises(Conflict, match="kept by another DPE"):
        await task
    assert len(h.driver.created) == 2


async def test_an_engine_that_loses_its_lease_stops_acting() -> None:
    h = Harness()
    await running(h)
    engine = h.engine
    assert engine is not None and h.runtime is not None and h.runtime.lease is not None
    h.runtime.lease.holder = "usurper:9"  # taken over
    await h.clock.advance(2)
    assert engine.halted.is_set()
    assert engine.halt_reason == "the lease was taken over"
    h.world.kill_resource("a1", "x")
    mark = len(h.world.ops)
    await h.clock.advance(30)
    assert h.world.ops[mark:] == []  # no monitor, no recovery
    await engine.shutdown()


# ---------------------------------------------------------------------------
# stop and shutdown


async def test_stop_goes_in_reverse_order_and_destroys_every_instance() -> None:
    h = Harness()
    await running(h)
    engine = h.engine
    assert engine is not None
    mark = len(h.world.ops)
    await engine.stop()
    stops = [str(o) for o in h.world.ops[mark:] if o.op == "stop"]
    assert stops.index("stop a2/y") < stops.index("stop a1/x")
    assert sorted(h.driver.destroyed) == sorted(i.instance_id for i in h.driver.created)
    assert h.story()[-1] == "dep stopped: every resource stopped, every instance destroyed"
    assert h.runtime is not None
    assert h.runtime.docs == {
        "deployable": {"": {"state": "stopped", "reason": h.engine.cell.reason, "failures": []}}  # type: ignore[union-attr]
    }
    assert h.runtime.lease is not None and h.runtime.lease.holder is None
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


async def test_a_normal_stop_reads_as_a_stop_not_as_a_failure() -> None:
    h = Harness()
    await running(h)
    assert h.engine is not None
    since = len(h.events)
    await h.engine.stop()
    story = h.story(since=since)
    assert not [line for line in story if " fencing:" in line or " unknown:" in line], story
    assert "a1 stopping: the deployable is stopping: destroying its instance" in story
    assert any(line.startswith("a1 stopped: instance ") for line in story)
    assert any(line.startswith("a1/x stopped") for line in story)


SHOP = deployable({"web2": [resource("www")], "db2": [resource("slow")]})


async def killed_while_stopping(h: Harness) -> None:
    """A DPE killed (-9) while it stops SHOP: web2 already destroyed, the slow
    stop of db2/slow in flight (it never ends: db2/slow may still run)."""
    await running(h, SHOP)
    engine = h.engine
    assert engine is not None
    h.world.script("db2", "slow", "stop", Slow(4, 0))
    web2 = h.world.guest("web2").instance.instance_id
    stopping = asyncio.create_task(engine.stop())
    await h.until(lambda: web2 in h.driver.destroyed and h.state("db2/slow") == "stopping")
    await engine.shutdown(release_lease=False)  # as good as dead: nothing more is done
    stopping.cancel()
    await settle()


async def test_a_stop_only_engine_creates_nothing_and_stops_what_still_runs() -> None:
    h = Harness()
    await killed_while_stopping(h)
    created, mark, since = len(h.driver.created), len(h.world.ops), len(h.events)
    db2 = h.world.guest("db2").instance.instance_id

    replacement = h.new_engine(SHOP, holder="test:2")
    starting = asyncio.create_task(replacement.start(stop_only=True))
    await h.until(starting.done, within=30)  # the dead DPE's lease expires first
    starting.result()
    await h.until_state("dep", "stopped", within=60)
    assert len(h.driver.created) == created, h.story(since=since)  # nothing created
    assert not [line for line in h.story(since=since) if " creating: " in line]
    assert h.world.ops_of("db2/slow", mark) == ["probe", "stop"]  # by its agent, then
    assert h.driver.destroyed[-1] == db2
    assert h.story(since=since)[-1] == (
        "dep stopped: every resource stopped, every instance destroyed"
    )
    await replacement.stop()  # cped's stop request: it is done already


async def test_a_stop_only_engine_says_which_resources_no_agent_stopped() -> None:
    h = Harness()
    await killed_while_stopping(h)
    since = len(h.events)
    h.world.guest("db2").alive = False  # its sshd is gone: db2/slow cannot be stopped

    replacement = h.new_engine(SHOP, holder="test:2")
    starting = asyncio.create_task(replacement.start(stop_only=True))
    await h.until(starting.done, within=30)
    await h.until_state("dep", "stopped", within=300)
    assert h.story(since=since)[-1] == (
        "dep stopped: every instance destroyed;"
        " not stopped by its agent, gone with its instance: db2/slow"
    )


async def test_shutdown_leaves_instances_running_and_ends_every_task() -> None:
    h = Harness()
    await running(h)
    assert h.engine is not None
    await h.engine.shutdown()
    await settle()
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
    assert h.driver.destroyed == []
    assert h.runtime is not None and sorted(h.runtime.docs["instance"]) == ["a1", "a2"]


async def test_a_failing_create_is_retried_with_back_off_then_succeeds() -> None:
    h = Harness()
    h.driver.fail_create = "no capacity"
    await h.start(TWO)
    await h.clock.advance(20)
    failures = [line for line in h.story("a1") if line.startswith("a1 failed")]
    assert failures[0] == "a1 failed: bringing up an instance failed: no capacity"
    assert 3 <= len(failures) <= 8  # retried, but not in a busy loop
    h.driver.fail_create = None
    await h.until_state("dep", "running", within=60)
    assert h.world.violations == []
