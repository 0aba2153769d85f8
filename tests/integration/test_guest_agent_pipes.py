"""The real guest agent as a local process over pipes: processes, timeouts, watches, protocol.

No SSH here (``tests/integration/test_guest_agent_ssh.py`` has the real guests):
the agent runs on ``AGENT_PYTHON`` (``PCLOUD_AGENT_PYTHON=/path/to/python3.9``
runs these on an old one) in a guest-like environment under a temporary
directory, started and spoken to by dped's own client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
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
from dpe.guest_agent import pcloud_agent as ga
from foundation.model import Resource
from tests.integration.agent_support import (
    AGENT_PYTHON,
    OcfProvider,
    PipeChannel,
    PipeConnection,
    ocf_provider,
)

__all__ = ["ocf_provider"]
pytestmark = pytest.mark.integration

SETTINGS = AgentSettings(python=AGENT_PYTHON)
WAIT = 15.0  # generous bounds: a loaded machine must not fail these (figures: bench/)
DUMMY = Resource(name="www")
HANGS = """#!/bin/sh
# start: a process group that never ends (the agent must kill all of it)
case "$1" in
start) sleep 600 & echo $! > "$HA_RSCTMP/child.pid"; echo $$ > "$HA_RSCTMP/agent.pid"; wait;;
monitor) exit 7;;
*) exit 0;;
esac
"""
ECHOES = """#!/bin/sh
# writes the parameter it was given, as it was given
printf '%s' "$OCF_RESKEY_value" > "$HA_RSCTMP/value"
echo "ocf-exit-reason:wrote it" >&2
exit 0
"""


@pytest.fixture
def guest_dir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="pc-agent-", dir="/tmp"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
async def connection(guest_dir: Path) -> AsyncIterator[PipeConnection]:
    made = PipeConnection(guest_dir)
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture
async def agent(connection: PipeConnection) -> AsyncIterator[AgentChannel]:
    channel = await start_agent(connection, SETTINGS, label="pipes")
    try:
        yield channel
    finally:
        await channel.close()


async def next_event(events: AsyncIterator[AgentEvent], within: float = WAIT) -> AgentEvent:
    return await asyncio.wait_for(anext(events), within)


def kill_pidfile(path: Path) -> None:
    with contextlib.suppress(OSError, ValueError):
        os.kill(int(path.read_text().split()[0]), signal.SIGKILL)


async def gone(pid: int, within: float = WAIT) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if ga.process_gone(pid):
            return True
        await asyncio.sleep(0.02)
    return False


async def test_the_agent_is_uploaded_once_then_started_from_the_guests_copy(
    connection: PipeConnection, guest_dir: Path
) -> None:
    source = agent_source()
    first = await start_agent(connection, SETTINGS)
    copy = guest_dir / "cache" / "pacemaker-cloud" / source.file_name
    assert copy.read_bytes() == source.text
    assert (copy.stat().st_mode & 0o777, copy.parent.stat().st_mode & 0o777) == (0o600, 0o700)
    written = copy.stat().st_mtime_ns
    await first.close()
    second = await start_agent(connection, SETTINGS)
    assert copy.stat().st_mtime_ns == written
    assert second.hello.sha256 == source.sha256
    await second.close()


async def test_a_stale_copy_and_older_versions_are_replaced(
    connection: PipeConnection, guest_dir: Path
) -> None:
    source = agent_source()
    directory = guest_dir / "cache" / "pacemaker-cloud"
    directory.mkdir(parents=True)
    (directory / source.file_name).write_text('import sys; print(\'{"type": "hello"}\')\n')
    (directory / "agent-0123456789abcdef.py").write_text("# an older version\n")
    channel = await start_agent(connection, SETTINGS)
    assert sorted(p.name for p in directory.glob("agent-*.py")) == [source.file_name]
    assert (directory / source.file_name).read_bytes() == source.text
    await channel.close()


async def test_no_such_interpreter_means_passive(connection: PipeConnection) -> None:
    with pytest.raises(AgentUnsupported, match="no python3-nonexistent on the guest"):
        await start_agent(connection, AgentSettings(python="python3-nonexistent"))


async def test_dummy_probe_start_monitor_stop(agent: AgentChannel) -> None:
    rcs = []
    for op in ("monitor", "start", "monitor", "stop", "monitor"):
        outcome = await agent.run(agent_ops.op_message(DUMMY, op))
        rcs.append(agent_ops.agent_result(DUMMY, op, outcome).rc)
    assert rcs == [OcfRc.NOT_RUNNING, OcfRc.OK, OcfRc.OK, OcfRc.OK, OcfRc.NOT_RUNNING]


async def test_exit_statuses_read_as_a_shells(
    agent: AgentChannel, ocf_provider: OcfProvider
) -> None:
    ocf_provider.install("crash", "#!/bin/sh\nkill -SEGV $$\n")
    ocf_provider.install("noexec", "#!/bin/sh\nexit 0\n")
    (ocf_provider.directory / "noexec").chmod(0o644)
    statuses = {}
    for name in ("crash", "noexec", "missing"):
        resource = Resource(name="r", provider=ocf_provider.name, type=name)
        statuses[name] = (await agent.run(agent_ops.op_message(resource, "start"))).exit_status
    assert statuses == {"crash": 128 + signal.SIGSEGV, "noexec": 126, "missing": 127}


async def test_an_operation_past_its_timeout_is_killed_with_its_whole_group(
    agent: AgentChannel, ocf_provider: OcfProvider, guest_dir: Path
) -> None:
    ocf_provider.install("hangs", HANGS)
    resource = Resource(name="r", provider=ocf_provider.name, type="hangs", timeouts={"start": 1})
    rsctmp = guest_dir / "run" / "resource-agents"
    try:
        outcome = await agent.run(agent_ops.op_message(resource, "start"))
        assert (outcome.timed_out, outcome.exit_status) == (True, None)
        for name in ("agent.pid", "child.pid"):
            assert await gone(int((rsctmp / name).read_text()))
    finally:
        kill_pidfile(rsctmp / "child.pid")


async def test_hostile_parameter_values_reach_the_agent_as_inert_data(
    agent: AgentChannel, ocf_provider: OcfProvider, guest_dir: Path
) -> None:
    canary = guest_dir / "pwned"
    hostile = (
        f"$(touch {canary}); `touch {canary}`; ' \" ; touch {canary} #\n"
        f"| touch {canary} && touch {canary} \\ ${{IFS}} é ☃"
    )
    ocf_provider.install("echoes", ECHOES)
    resource = Resource(
        name="r", provider=ocf_provider.name, type="echoes", parameters={"value": hostile}
    )
    result = agent_ops.agent_result(
        resource, "start", await agent.run(agent_ops.op_message(resource, "start"))
    )
    assert (result.rc, result.reason) == (OcfRc.OK, "start returned 0 (ok): wrote it")
    assert (guest_dir / "run" / "resource-agents" / "value").read_text() == hostile
    assert not canary.exists()


async def test_a_killed_process_is_reported_at_once_not_at_the_next_monitor(
    agent: AgentChannel, guest_dir: Path
) -> None:
    app = Resource(
        name="app", type="anything", parameters={"binfile": "/bin/sleep", "cmdline_options": "600"}
    )
    pidfile = guest_dir / "run" / "anything_app.pid"
    try:
        assert (await agent.run(agent_ops.op_message(app, "start"))).exit_status == 0
        key = agent_ops.monitor_key("app", 60)
        op = agent_ops.op_message(app, "monitor", interval=60)
        await agent.schedule(key, op, 60, agent_ops.watch_message(app))
        events = agent.events()
        first = await next_event(events)
        assert isinstance(first, MonitorChange) and first.outcome.exit_status == 0
        pid = int(pidfile.read_text())
        os.kill(pid, signal.SIGKILL)
        died, confirmed = await next_event(events), await next_event(events)
        assert died == ProcessDied(key, pid)
        assert isinstance(confirmed, MonitorChange) and confirmed.cause == "watch"
        assert confirmed.outcome.exit_status != 0  # within WAIT, where the interval is 60 s
    finally:
        kill_pidfile(pidfile)


async def test_the_client_notices_a_killed_agent_and_a_new_one_starts(
    agent: AgentChannel, connection: PipeConnection
) -> None:
    os.kill(agent.hello.pid, signal.SIGKILL)
    gone_event = await next_event(agent.events())
    assert isinstance(gone_event, AgentGone) and "status 137" in gone_event.reason
    again = await start_agent(connection, SETTINGS)
    assert again.hello.pid != agent.hello.pid
    assert (await again.run(agent_ops.op_message(DUMMY, "monitor"))).exit_status == 7
    await again.close()


async def test_a_stopped_agent_misses_its_heartbeat_and_its_successor_kills_it(
    agent: AgentChannel, connection: PipeConnection
) -> None:
    stuck = agent.hello.pid
    os.kill(stuck, signal.SIGSTOP)
    try:
        lost = await next_event(agent.events())
        assert isinstance(lost, AgentGone) and lost.reason.startswith("no heartbeat")
        successor = await start_agent(connection, SETTINGS)
        assert await gone(stuck)
        await successor.close()
    finally:
        with contextlib.suppress(OSError):
            os.kill(stuck, signal.SIGKILL)


# ---------------------------------------------------------------------------
# the protocol on the wire


async def raw_agent(connection: PipeConnection) -> PipeChannel:
    """The agent started by hand (after the client put it in place)."""
    await (await start_agent(connection, SETTINGS)).close()
    directory = Path(connection.env["XDG_CACHE_HOME"]) / "pacemaker-cloud"
    script = directory / agent_source().file_name
    return await connection.open_channel(f"exec {AGENT_PYTHON} -I -S {script}", 5.0)


async def replies(channel: PipeChannel, count: int) -> list[dict[str, object]]:
    """The next ``count`` messages that are not heartbeats."""
    framer, found = ga.LineFramer(ga.MAX_REPLY_LINE), []
    while len(found) < count:
        data = await asyncio.wait_for(channel.read(65536), WAIT)
        assert data, f"the agent ended: {channel.stderr_tail()}"
        messages = [json.loads(line) for line in framer.feed(data)]
        found += [m for m in messages if m["type"] not in ("hello", "heartbeat")]
    return found


async def test_garbage_and_oversized_lines_are_refused_and_the_agent_goes_on(
    connection: PipeConnection,
) -> None:
    channel = await raw_agent(connection)
    try:
        await channel.write(b"\x00\xffnot json\n")
        await channel.write(b"{" + b"x" * (ga.MAX_LINE + 10) + b"}\n")
        await channel.write(b'{"type": "shutdown", "id": "x"}\n')
        op = json.dumps(agent_ops.op_message(DUMMY, "monitor"))
        await channel.write(b'{"type": "run", "id": "ok", "op": ' + op.encode() + b"}\n")
        got = await replies(channel, 4)
        assert [(m.get("code"), m["id"]) for m in got] == [
            ("invalid", None),
            ("too_long", None),
            ("unknown_type", "x"),
            (None, "ok"),
        ]
    finally:
        channel.close()
    assert await channel.wait(WAIT) == 0  # its input ended: it exits


async def test_without_pidfds_a_death_is_seen_by_polling(guest_dir: Path) -> None:
    proc = await asyncio.create_subprocess_exec("sleep", "600")
    loop = asyncio.get_running_loop()
    died = asyncio.Event()
    watcher = ga.ProcessWatcher.__new__(ga.ProcessWatcher)
    watcher.loop, watcher.mode = loop, "poll"
    handle = watcher.watch(proc.pid, died.set)
    try:
        proc.kill()
        await proc.wait()
        await asyncio.wait_for(died.wait(), WAIT)
    finally:
        handle.close()
