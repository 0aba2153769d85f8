"""The guest agent on real local guests (sshd, as root in their own PID namespace).

Started by dped's client over the pinned SSH connection, from the guest's own
copy under the instance's ``XDG_CACHE_HOME``; real OCF agents (Dummy,
anything, and the test's own).  Latency bounds here are generous (a loaded
machine must not fail them); the figures are in ``bench/agent.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dpe import agent_ops
from dpe.agent_channel import (
    AgentChannel,
    AgentEvent,
    AgentGone,
    AgentSettings,
    AgentUnsupported,
    MonitorChange,
    ProcessDied,
    start_agent,
)
from dpe.agents import OcfRc
from dpe.guest_agent import agent_source
from dpe.interfaces import Instance
from foundation.model import Resource
from tests.integration import test_local_driver_support as support
from tests.integration.agent_support import OcfProvider, ocf_provider
from tests.integration.test_local_driver_support import Guest, instance_processes

# fixtures
key_dir, ssh_keys, local_driver, guest = (
    support.key_dir,
    support.ssh_keys,
    support.local_driver,
    support.guest,
)
__all__ = ["guest", "key_dir", "local_driver", "ocf_provider", "ssh_keys"]

pytestmark = pytest.mark.integration
WAIT = 15.0
DEATH_BOUND = 2.0  # kill -9 -> reported; the target is 100 ms, the monitor interval 60 s
APP = Resource(
    name="app", type="anything", parameters={"binfile": "/bin/sleep", "cmdline_options": "600"}
)
ECHOES = """#!/bin/sh
printf '%s' "$OCF_RESKEY_value" > "$HA_RSCTMP/value"
exit 0
"""


@pytest.fixture
async def agent(guest: Guest) -> AsyncIterator[AgentChannel]:
    channel = await start_agent(guest.connection, label="web")
    try:
        yield channel
    finally:
        await channel.close()


def instance_dir(guest: Guest) -> Path:
    return Path(guest.instance.extra["dir"])


def host_pid(instance: Instance, guest_pid: int) -> int:
    """The host's pid of a process the guest knows as ``guest_pid``."""
    for stat in instance_processes(instance):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{stat.pid}/status").read_text().splitlines():
                if line.startswith("NSpid:") and int(line.split()[-1]) == guest_pid:
                    return stat.pid
    raise AssertionError(f"no process {guest_pid} in {instance.instance_id}")


def alive_in_guest(instance: Instance, pid: int) -> bool:
    return any(stat.pid == pid and stat.alive for stat in instance_processes(instance))


async def next_event(events: AsyncIterator[AgentEvent], within: float = WAIT) -> AgentEvent:
    return await asyncio.wait_for(anext(events), within)


async def until_gone(instance: Instance, pid: int) -> bool:
    deadline = time.monotonic() + WAIT
    while alive_in_guest(instance, pid):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def test_the_agent_runs_inside_the_guest_from_its_own_private_copy(
    guest: Guest, agent: AgentChannel
) -> None:
    source = agent_source()
    copy = instance_dir(guest) / "cache" / "pacemaker-cloud" / source.file_name
    assert copy.read_bytes() == source.text
    assert copy.parent.stat().st_mode & 0o777 == 0o700
    assert agent.hello.watch == "pidfd"
    assert alive_in_guest(guest.instance, host_pid(guest.instance, agent.hello.pid))
    result = await agent.run(agent_ops.op_message(Resource(name="www"), "monitor"))
    assert result.exit_status == OcfRc.NOT_RUNNING


async def test_a_killed_process_is_reported_at_once(guest: Guest, agent: AgentChannel) -> None:
    pidfile = instance_dir(guest) / "run" / "anything_app.pid"
    assert (await agent.run(agent_ops.op_message(APP, "start"))).exit_status == 0
    try:
        key = agent_ops.monitor_key("app", 60)
        op = agent_ops.op_message(APP, "monitor", interval=60)
        await agent.schedule(key, op, 60, agent_ops.watch_message(APP))
        events = agent.events()
        assert isinstance(await next_event(events), MonitorChange)
        guest_pid = int(pidfile.read_text())
        victim = host_pid(guest.instance, guest_pid)
        killed = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        died = await next_event(events)
        confirmed = await next_event(events)
        elapsed = time.monotonic() - killed
        assert died == ProcessDied(key, guest_pid)
        assert isinstance(confirmed, MonitorChange)
        assert (confirmed.cause, confirmed.outcome.exit_status != 0) == ("watch", True)
        assert elapsed < DEATH_BOUND, f"{elapsed:.3f} s"
    finally:
        await agent.run(agent_ops.op_message(APP, "stop"))


async def test_the_agent_runs_as_a_module_without_ssl_its_code_kept_compiled(
    guest: Guest, agent: AgentChannel
) -> None:
    source = agent_source()
    pid = host_pid(guest.instance, agent.hello.pid)
    words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert words[words.index(b"-c") + 2].endswith(source.file_name.encode()), words
    maps = Path(f"/proc/{pid}/maps").read_text()
    assert "libssl" not in maps and "_ssl." not in maps
    compiled = instance_dir(guest) / "cache" / "pacemaker-cloud" / "__pycache__"
    assert [p.name.split(".")[0] for p in compiled.glob("*.pyc")] == [source.file_name[:-3]]


async def test_a_stale_copy_in_the_guest_is_replaced(guest: Guest) -> None:
    source = agent_source()
    first = await start_agent(guest.connection)
    await first.close()
    directory = instance_dir(guest) / "cache" / "pacemaker-cloud"
    copy = directory / source.file_name
    copy.write_text("# a copy from another version\n")
    older = directory / "__pycache__" / "agent-0123456789abcdef.cpython-311.pyc"
    older.write_bytes(b"compiled code of an older version")
    channel = await start_agent(guest.connection)
    assert copy.read_bytes() == source.text
    assert channel.hello.sha256 == source.sha256
    assert not older.exists()  # dropped with the upload
    await channel.close()


async def test_a_killed_agent_is_noticed_and_another_one_starts(
    guest: Guest, agent: AgentChannel
) -> None:
    os.kill(host_pid(guest.instance, agent.hello.pid), signal.SIGKILL)
    lost = await next_event(agent.events())
    assert isinstance(lost, AgentGone) and "status 137" in lost.reason
    again = await start_agent(guest.connection)
    assert (await again.run(agent_ops.op_message(Resource(name="www"), "monitor"))).exit_status
    await again.close()


async def test_a_stopped_agent_misses_its_heartbeat_and_is_replaced(
    guest: Guest, agent: AgentChannel
) -> None:
    stuck = host_pid(guest.instance, agent.hello.pid)
    os.kill(stuck, signal.SIGSTOP)
    try:
        lost = await next_event(agent.events())
        assert isinstance(lost, AgentGone) and lost.reason.startswith("no heartbeat")
        successor = await start_agent(guest.connection)
        assert await until_gone(guest.instance, stuck)  # the lock's holder is killed
        await successor.close()
    finally:
        with contextlib.suppress(OSError):
            os.kill(stuck, signal.SIGKILL)


async def test_the_agent_ends_with_its_channel(guest: Guest) -> None:
    channel = await start_agent(guest.connection)
    pid = host_pid(guest.instance, channel.hello.pid)
    await channel.close()
    assert await until_gone(guest.instance, pid)


async def test_a_guest_without_the_interpreter_is_monitored_passively(guest: Guest) -> None:
    with pytest.raises(AgentUnsupported, match="no python3-missing on the guest"):
        await start_agent(guest.connection, AgentSettings(python="python3-missing"))


async def test_hostile_parameter_values_stay_inert_through_the_agent(
    guest: Guest, agent: AgentChannel, ocf_provider: OcfProvider
) -> None:
    canary = instance_dir(guest) / "pwned"
    hostile = f"$(touch {canary}); `touch {canary}`; ' \" ; touch {canary} #\n| touch {canary}"
    ocf_provider.install("echoes", ECHOES)
    resource = Resource(
        name="r", provider=ocf_provider.name, type="echoes", parameters={"value": hostile}
    )
    assert (await agent.run(agent_ops.op_message(resource, "start"))).exit_status == 0
    assert (instance_dir(guest) / "run" / "resource-agents" / "value").read_text() == hostile
    assert not canary.exists()
