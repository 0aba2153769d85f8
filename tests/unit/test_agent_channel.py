"""dped's client of the guest agent, against fake guests running the real protocol code.

Starting (upload when missing or stale, fallback when the guest cannot run it),
requests, reports, and the loss of the agent on the fake clock.  The same
against real processes and real sshd guests is in ``tests/integration``.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dpe import agent_ops
from dpe.agent_channel import (
    AgentChannel,
    AgentEvent,
    AgentGone,
    AgentLost,
    AgentSettings,
    AgentUnsupported,
    MonitorChange,
    ProcessDied,
    _within,
    start_agent,
    start_command,
    upload_command,
)
from dpe.agents import OcfRc
from dpe.engine_timing import deployable_phase
from dpe.guest_agent import agent_source
from dpe.guest_agent import pcloud_agent as ga
from dpe.guest_agent.pcloud_agent import MAX_RUNNING
from foundation.errors import InvalidInput, OperationTimeout, Unavailable
from foundation.model import Assembly, Resource
from tests.unit.fakes import (
    FakeClock,
    FakeConnection,
    FakeDriver,
    FakeGuest,
    FakeTransport,
    FakeWorld,
    fake_keys,
    settle,
)

DUMMY = Resource(name="www")
APP = Resource(name="app", type="anything", parameters={"binfile": "/bin/sleep"})


@dataclass
class Rig:
    clock: FakeClock
    world: FakeWorld
    guest: FakeGuest
    connection: FakeConnection
    agents: list[AgentChannel]

    async def start(self, settings: AgentSettings | None = None) -> AgentChannel:
        channel = await start_agent(self.connection, settings, clock=self.clock, label="web")
        self.agents.append(channel)
        return channel


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    clock = FakeClock()
    world = FakeWorld(clock)
    instance = await FakeDriver(world).create("shop", Assembly("web", "0" * 32), fake_keys("web"))
    connection = await FakeTransport(world).connect(instance, fake_keys("web"), 5.0)
    made = Rig(clock, world, world.guest("web"), connection, [])
    try:
        yield made
    finally:
        for channel in made.agents:
            await channel.close()
        await settle()


async def next_event(events: AsyncIterator[AgentEvent], clock: FakeClock) -> AgentEvent:
    """The next event, letting fake time run until it comes."""
    task = asyncio.ensure_future(anext(events))
    await clock.run_until(task.done, within=60.0)
    return task.result()


async def test_the_first_start_uploads_the_agent(rig: Rig) -> None:
    channel = await rig.start()
    source = agent_source()
    assert rig.guest.agent_files == {source.file_name: source.text}
    assert (channel.hello.protocol, channel.hello.sha256) == (1, source.sha256)


async def test_a_guest_that_has_the_agent_gets_no_upload(rig: Rig) -> None:
    source = agent_source()
    rig.guest.agent_files = {source.file_name: source.text}
    before = rig.guest.agent_files
    await rig.start()
    assert rig.guest.agent_files is before


async def test_a_stale_or_damaged_copy_is_replaced(rig: Rig) -> None:
    source = agent_source()
    rig.guest.agent_files = {source.file_name: b"print('an older agent')\n"}
    channel = await rig.start()
    assert rig.guest.agent_files == {source.file_name: source.text}
    assert channel.hello.sha256 == source.sha256


async def test_a_copy_that_stays_wrong_after_an_upload_means_passive(rig: Rig) -> None:
    rig.guest.corrupt_uploads = True
    with pytest.raises(AgentUnsupported, match=r"another version .* after an upload"):
        await rig.start()


async def test_a_guest_without_python_means_passive(rig: Rig) -> None:
    rig.guest.python = False
    with pytest.raises(AgentUnsupported, match="no python3 on the guest"):
        await rig.start()


async def test_a_new_agent_replaces_the_one_running(rig: Rig) -> None:
    first = await rig.start()
    old = rig.guest.agent
    await rig.start()
    assert old is not None and not old.alive
    assert (await next_event(first.events(), rig.clock)) == AgentGone(
        "the agent exited with status 137: (no message)"
    )


async def test_one_shot_operations_map_as_the_passive_ones_do(rig: Rig) -> None:
    channel = await rig.start()
    rcs = []
    for op in ("monitor", "start", "monitor", "stop", "monitor"):
        outcome = await channel.run(agent_ops.op_message(DUMMY, op))
        rcs.append(agent_ops.agent_result(DUMMY, op, outcome).rc)
    assert rcs == [OcfRc.NOT_RUNNING, OcfRc.OK, OcfRc.OK, OcfRc.OK, OcfRc.NOT_RUNNING]
    assert rig.world.ops_of("web/www") == ["probe", "start", "probe", "stop", "probe"]


async def test_an_operation_the_agent_killed_is_a_timeout(rig: Rig) -> None:
    channel = await rig.start()
    rig.world.script("web", "www", "start", "hang")
    task = asyncio.ensure_future(channel.run(agent_ops.op_message(DUMMY, "start")))
    await rig.clock.run_until(task.done, within=30.0)
    with pytest.raises(OperationTimeout, match="start timed out after 20 s"):
        agent_ops.agent_result(DUMMY, "start", task.result())


async def test_changes_come_as_events(rig: Rig) -> None:
    channel = await rig.start()
    await channel.run(agent_ops.op_message(DUMMY, "start"))
    key = agent_ops.monitor_key("www", 10.0)
    await channel.schedule(key, agent_ops.op_message(DUMMY, "monitor", interval=10.0), 10.0)
    events = channel.events()
    first = await next_event(events, rig.clock)
    assert isinstance(first, MonitorChange)
    assert (first.key, first.outcome.exit_status, first.cause) == (key, 0, "monitor")
    rig.world.kill_resource("web", "www")  # no process to watch: the next monitor tells
    second = await next_event(events, rig.clock)
    assert isinstance(second, MonitorChange)
    assert (second.outcome.exit_status, second.cause) == (7, "monitor")
    assert rig.world.ops_of("web/www").count("monitor") == 2


async def test_a_watched_death_comes_before_the_next_monitor(rig: Rig) -> None:
    channel = await rig.start()
    await channel.run(agent_ops.op_message(APP, "start"))
    key = agent_ops.monitor_key("app", 60.0)
    op = agent_ops.op_message(APP, "monitor", interval=60.0)
    await channel.schedule(key, op, 60.0, agent_ops.watch_message(APP))
    events = channel.events()
    await next_event(events, rig.clock)
    started = rig.clock.now
    rig.world.kill_resource("web", "app")
    died = await next_event(events, rig.clock)
    confirmed = await next_event(events, rig.clock)
    assert isinstance(died, ProcessDied) and died.key == key
    assert isinstance(confirmed, MonitorChange)
    assert (confirmed.outcome.exit_status, confirmed.cause) == (7, "watch")
    assert rig.clock.now == started  # at once, not after 60 s


async def test_after_a_cancel_the_agent_stops_monitoring(rig: Rig) -> None:
    channel = await rig.start()
    key = agent_ops.monitor_key("www", 1.0)
    await channel.schedule(key, agent_ops.op_message(DUMMY, "monitor", interval=1.0), 1.0)
    await rig.clock.advance(3.0)
    await channel.cancel(key)
    before = len(rig.world.ops)
    await rig.clock.advance(10.0)
    assert len(rig.world.ops) == before


async def test_a_refused_request_is_invalid_input(rig: Rig) -> None:
    channel = await rig.start()
    with pytest.raises(InvalidInput, match=r"refused schedule: invalid: op\.action"):
        await channel.schedule("k", agent_ops.op_message(DUMMY, "start"), 10.0)
    assert channel.lost is None


async def test_a_busy_agent_is_unavailable_for_now(rig: Rig) -> None:
    channel = await rig.start()
    hung = []
    for n in range(MAX_RUNNING):
        rig.world.script("web", f"r{n}", "start", "hang")
        op = agent_ops.op_message(Resource(name=f"r{n}"), "start")
        hung.append(asyncio.ensure_future(channel.run(op)))
    await settle()
    with pytest.raises(Unavailable, match="refused run: busy"):
        await channel.run(agent_ops.op_message(DUMMY, "monitor"))
    await rig.clock.run_until(lambda: all(task.done() for task in hung), within=30.0)


async def test_a_frozen_agent_is_lost_once_its_heartbeat_is_missed(rig: Rig) -> None:
    channel = await rig.start()
    assert rig.guest.agent is not None
    rig.guest.agent.freeze()
    request = asyncio.ensure_future(channel.run(agent_ops.op_message(DUMMY, "monitor")))
    gone = await next_event(channel.events(), rig.clock)
    assert gone == AgentGone("no heartbeat from the agent for 3.0 s")
    with pytest.raises(AgentLost, match="no heartbeat"):
        await request
    with pytest.raises(AgentLost):
        await channel.cancel("k")


async def test_a_killed_agent_is_lost_at_once_and_another_starts(rig: Rig) -> None:
    channel = await rig.start()
    assert rig.guest.agent is not None
    rig.guest.agent.kill()
    started = rig.clock.now
    gone = await next_event(channel.events(), rig.clock)
    assert isinstance(gone, AgentGone) and "status 137" in gone.reason
    assert rig.clock.now == started
    again = await rig.start()
    assert (await again.run(agent_ops.op_message(DUMMY, "monitor"))).exit_status == 7


async def test_a_late_loop_does_not_blame_the_agent(rig: Rig) -> None:
    channel = await rig.start()
    assert rig.guest.agent is not None
    await rig.clock.advance(2.0)
    rig.guest.agent.channel.hold()  # dped's loop is blocked for 5 s: nothing is read
    rig.clock.now += 5.0
    await rig.clock.advance(0.0)  # then every timer fires late, the watchdog's too
    rig.guest.agent.channel.release()
    await rig.clock.advance(3.0)
    assert channel.lost is None
    assert channel.heartbeats >= 6


async def test_a_frozen_guest_is_lost_like_a_frozen_agent(rig: Rig) -> None:
    channel = await rig.start()
    rig.world.freeze_instance("web")
    gone = await next_event(channel.events(), rig.clock)
    assert gone == AgentGone("no heartbeat from the agent for 3.0 s")


async def test_closing_ends_the_agent(rig: Rig) -> None:
    channel = await rig.start()
    await channel.close()
    await settle()
    assert rig.guest.agent is not None and not rig.guest.agent.alive
    assert channel.lost == "closed by dped"


def test_the_start_command_quotes_a_chosen_directory_and_checks_the_interpreter() -> None:
    source = agent_source()
    chosen = AgentSettings(directory="/srv/my agents/$(id)", python="/opt/py3.9/bin/python3")
    command = start_command(chosen, source)
    assert shlex.split(command)[0] == "d=/srv/my agents/$(id);"
    assert "'/srv/my agents/$(id)'" in upload_command(chosen, source)
    with pytest.raises(InvalidInput, match="not an interpreter"):
        start_command(AgentSettings(python="python3; reboot"), source)


@pytest.mark.parametrize(
    ("interval", "word"), [(0.2, "0.2"), (1.0, "1"), (0.001, "0.05"), (90, "60")]
)
def test_the_agent_beats_at_the_deployable_interval_within_its_range(
    interval: float, word: str
) -> None:
    command = start_command(AgentSettings(heartbeat_interval=interval), agent_source())
    assert shlex.split(command)[-2:] == ["--heartbeat", word]


@given(
    interval=st.floats(min_value=0.001, max_value=90, allow_nan=False),
    phase=st.floats(min_value=0, max_value=1e6, allow_nan=False),
)
def test_the_phase_given_to_the_agent_is_always_within_its_interval(
    interval: float, phase: float
) -> None:
    settings = AgentSettings(heartbeat_interval=interval, heartbeat_phase=phase)
    words = shlex.split(start_command(settings, agent_source()))
    given_interval = float(words[words.index("--heartbeat") + 1])
    given_phase = ga.phase_seconds(words[words.index("--phase") + 1])
    assert 0 <= given_phase < given_interval


def test_the_guests_of_a_deployable_share_a_phase_and_deployables_spread() -> None:
    phases = {name: deployable_phase(name, 1.0) for name in (f"shop{n}" for n in range(200))}
    assert all(0 <= phase < 1.0 for phase in phases.values())
    assert deployable_phase("shop7", 1.0) == phases["shop7"]  # every DPE of it, every time
    tenths = {int(phase * 10) for phase in phases.values()}
    assert len(tenths) == 10  # spread over the whole second, not bunched
    assert "--phase" not in start_command(AgentSettings(), agent_source())  # unless asked


async def test_the_fake_guest_runs_the_agent_at_the_interval_asked(rig: Rig) -> None:
    channel = await rig.start(AgentSettings(heartbeat_interval=0.5, heartbeat_timeout=1.5))
    await rig.clock.advance(2.0)
    assert channel.heartbeats == 5  # at 0, 0.5, 1, 1.5 and 2 s


async def test_a_handshake_still_running_at_its_bound_is_a_timeout() -> None:
    """A slow guest (an emulated server on a loaded host) is a timeout, the passive
    fallback's cue, not an error about a result not yet set."""
    clock = FakeClock()
    never: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def handshake() -> str:  # a task: cancelled only once it runs again
        return await never

    task = asyncio.ensure_future(_within(clock, 10.0, handshake()))
    await clock.run_until(task.done, within=30.0)
    with pytest.raises(OperationTimeout, match="did not answer within 10 s"):
        task.result()
    assert never.cancelled()
