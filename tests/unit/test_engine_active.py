"""Active monitoring in the engine, with fake guests running the real agent's protocol code.

The guest agent starts with the instance (or the guest is monitored passively,
and an event says why); its heartbeat replaces the SSH keepalive; a watched
process that dies fails its resource at once; a lost agent is confirmed by a
fresh keepalive, started again once, and an agent lost again soon after fails
its assembly per its policy.  Everything on the fake clock.
"""

from __future__ import annotations

from typing import Any

from dpe.agent_ops import monitor_key
from dpe.guest_agent import agent_source
from foundation.model import Deployable, parse
from tests.unit.fakes import FakeAgentProgram, Harness, Slow

HEARTBEAT = {"interval": 1, "timeout": 3, "health_interval": 5}
DAEMON = {"name": "web", "class": "lsb", "type": "web", "monitor_interval": 60}  # a pidfile


def deployable(*resources: dict[str, Any], **extra: Any) -> Deployable:
    return parse(
        {
            "name": "dep",
            "heartbeat": HEARTBEAT,
            "assemblies": [{"name": "a1", "resources": list(resources), **extra}],
        }
    )


ONE = deployable(DAEMON)


async def running(h: Harness, doc: Deployable = ONE) -> None:
    await h.start(doc)
    await h.until_state("dep", "running", within=30)


def agent(h: Harness, assembly: str = "a1") -> FakeAgentProgram:
    program = h.world.guest(assembly).agent
    assert program is not None and program.alive
    return program


def failures(h: Harness, since: int = 0) -> list[str]:
    """The story's lines of something that failed."""
    return [line for line in h.story(since=since) if line.split(": ")[0].endswith(" failed")]


# ---------------------------------------------------------------------------
# starting


async def test_the_agent_starts_with_the_instance_and_status_says_so() -> None:
    h = Harness()
    await running(h)
    assert h.world.guest("a1").agent_files == {agent_source().file_name: agent_source().text}
    assert h.engine is not None
    monitoring = h.engine.status()["assemblies"]["a1"]["monitoring"]
    assert monitoring["mode"] == "active"
    assert monitoring["reason"].startswith("guest agent pid ")
    assert h.runtime is not None
    assert h.runtime.docs["assembly"]["a1"]["monitoring"] == monitoring
    assert h.engine.status()["monitoring"] == "active"


async def test_a_stale_agent_on_the_guest_is_replaced() -> None:
    h = Harness()
    h.world.agent_files = {agent_source().file_name: b"# an agent of another version\n"}
    await running(h)
    assert h.world.guest("a1").agent_files == {agent_source().file_name: agent_source().text}
    assert h.engine is not None
    assert h.engine.status()["assemblies"]["a1"]["monitoring"]["mode"] == "active"


async def test_a_guest_without_python_is_monitored_passively_and_says_why() -> None:
    h = Harness()
    h.world.python = False
    await running(h)
    assert "a1 connecting: monitoring passively: no python3 on the guest" in h.story()
    assert h.engine is not None
    monitoring = h.engine.status()["assemblies"]["a1"]["monitoring"]
    assert monitoring == {"mode": "passive", "reason": "no python3 on the guest"}
    before = h.world.keepalives
    await h.clock.advance(10)
    assert h.world.keepalives - before == 10  # the SSH keepalive is the heartbeat
    h.world.kill_resource("a1", "web")
    await h.until_event("a1/web failed: monitor returned 7 (not running)", within=70)


async def test_a_passive_deployable_starts_no_agent() -> None:
    h = Harness(monitoring="passive")
    await running(h)
    assert h.world.guest("a1").agents_started == 0
    assert not [line for line in h.story() if "monitoring passively" in line]
    assert h.engine is not None
    reason = h.engine.status()["assemblies"]["a1"]["monitoring"]["reason"]
    assert reason == "the deployable's monitoring is passive"


# ---------------------------------------------------------------------------
# while it runs


async def test_no_ssh_keepalive_while_the_agent_runs() -> None:
    h = Harness()
    await running(h)
    before = h.world.keepalives
    await h.clock.advance(30)
    assert h.world.keepalives == before
    assert h.state("a1") == "running"


async def test_a_watched_process_that_dies_fails_its_resource_at_once() -> None:
    h = Harness()
    await running(h)
    await h.clock.advance(5)
    killed_at = h.clock.now
    mark = len(h.events)
    h.world.kill_resource("a1", "web")
    await h.until_event("a1/web failed: monitor returned 7 (not running)", within=1)
    assert h.clock.now == killed_at  # the watch, not the 60 s monitor
    await h.until_state("dep", "running")
    assert h.story(since=mark)[-1] == "dep running: 1 assembly running, 1 resource running"


async def test_the_monitor_is_cancelled_at_the_agent_before_the_stop_runs() -> None:
    h = Harness()
    await running(h)
    program = agent(h)
    h.world.kill_resource("a1", "web")
    await h.until(lambda: h.world.ops_of("a1/web")[-3:] == ["stop", "start", "monitor"])
    sent = [(m["type"], m.get("key") or m["op"]["action"]) for m in program.messages()]
    key = monitor_key("web", 60)
    assert sent[-4:] == [
        ("cancel", key),  # answered before the stop is even sent
        ("run", "stop"),
        ("run", "start"),
        ("schedule", key),
    ]


async def test_a_busy_agent_runs_the_operation_over_ssh() -> None:
    h = Harness()
    await running(h)
    program = agent(h)
    program.refuse_runs = "busy"
    h.world.kill_resource("a1", "web")
    await h.until(lambda: h.world.ops_of("a1/web")[-3:] == ["stop", "start", "monitor"])
    await h.until_state("dep", "running")
    assert failures(h) == ["a1/web failed: monitor returned 7 (not running)"]
    assert [m["op"]["action"] for m in program.messages() if m["type"] == "run"][-2:] == [
        "stop",
        "start",
    ]  # asked, refused, then run over SSH


# ---------------------------------------------------------------------------
# losing it


async def test_a_killed_agent_is_started_again_once_and_its_monitors_with_it() -> None:
    h = Harness()
    await running(h)
    agent(h).kill()
    await h.until_event_starting("a1 running: guest agent started again: guest agent pid ")
    assert (
        "a1 running: guest agent lost (the agent exited with status 137: (no message);"
        " loop lag 0.0 s; fresh keepalive: answered in 0.00 s): starting it again"
    ) in h.story()
    assert h.world.guest("a1").agents_started == 2
    mark = len(h.events)
    h.world.kill_resource("a1", "web")  # watched by the new agent
    await h.until_event("a1/web failed: monitor returned 7 (not running)", within=1)
    await h.until_state("dep", "running")
    assert [line for line in failures(h) if line.startswith("a1 ")] == []
    assert h.driver.destroyed == []
    assert h.story(since=mark)[-1].startswith("dep running")


async def test_a_stuck_agent_is_replaced_and_stuck_again_soon_fails_the_assembly() -> None:
    h = Harness()
    await running(h)
    first = h.world.guest("a1").instance.instance_id
    agent(h).freeze()  # SIGSTOP: silent, reads nothing
    await h.until_event_starting("a1 running: guest agent started again", within=10)
    assert "no heartbeat from the agent for 3.0 s" in " ".join(h.story())
    assert h.driver.destroyed == []
    agent(h).freeze()  # stuck again, well within the window
    line = await h.until_event_starting("a1 failed: guest agent lost again", within=10)
    assert line == (
        "a1 failed: guest agent lost again within 60 s of its restart:"
        " no heartbeat from the agent for 3.0 s"
    )
    await h.until(lambda: h.state("dep") == "running" and len(h.driver.created) == 2)
    assert h.driver.destroyed == [first]  # the default policy: fence, create, probe, start
    assert f"dep recovering: assembly {line}" in h.story()


async def test_an_agent_lost_again_after_the_window_is_started_again() -> None:
    h = Harness()
    await running(h)
    agent(h).kill()
    await h.until_event_starting("a1 running: guest agent started again")
    await h.clock.advance(61)
    agent(h).kill()
    await h.until(
        lambda: sum("guest agent started again" in line for line in h.story()) == 2, within=10
    )
    assert h.driver.destroyed == []


async def test_an_agent_that_cannot_be_started_again_fails_the_assembly() -> None:
    doc = deployable(DAEMON, escalation={"failures": 1, "period": 60})
    h = Harness()
    await running(h, doc)
    h.world.guest("a1").python = False
    agent(h).kill()
    line = await h.until_event_starting("a1 failed: ", within=10)
    assert line == "a1 failed: guest agent lost and not started again: no python3 on the guest"
    await h.until_event_starting(  # this policy: one assembly failure restarts them all
        "dep recovering: assembly a1: 1 failure in 60 s: escalating to deployable"
    )
    await h.until_state("dep", "running", within=30)


async def test_an_operation_in_flight_when_the_agent_dies_runs_on_its_successor() -> None:
    h = Harness()
    await running(h)
    h.world.kill_resource("a1", "web")
    h.world.script("a1", "web", "start", Slow(2.0, 0))
    await h.until(lambda: h.state("a1/web") == "starting")
    await h.clock.advance(1.0)
    first = agent(h)
    first.kill()  # the start's answer is lost with it
    await h.until_state("dep", "running", within=30)
    second = agent(h)
    assert [m["op"]["action"] for m in first.messages() if m["type"] == "run"][-1] == "start"
    assert [m["op"]["action"] for m in second.messages() if m["type"] == "run"] == ["start"]
    assert h.state("a1/web") == "running"
    assert [line for line in failures(h) if line.startswith("a1 ")] == []


async def test_a_frozen_guest_fails_with_its_evidence() -> None:
    h = Harness()
    await running(h)
    h.world.freeze_instance("a1")
    line = await h.until_event_starting("a1 failed: ", within=10)
    assert line == (
        "a1 failed: no heartbeat for 3.0 s (guest agent silent; loop lag 0.0 s;"
        " fresh keepalive: no answer within 1 s)"
    )


async def test_a_killed_instance_is_a_lost_connection() -> None:
    h = Harness()
    await running(h)
    h.world.kill_instance("a1")
    line = await h.until_event_starting("a1 failed: ", within=10)
    assert line == "a1 failed: connection lost: connection reset by peer"
