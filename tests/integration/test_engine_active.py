"""Active monitoring end to end: the engine, real local guests, their guest agents.

The engine runs in this process (``test_engine_local.Local``) with real sshd
guests, SSH, OCF agents and SQLite; each guest runs the guest agent dped
started.  The tests break things from outside (kill -9 a watched daemon, kill
or stop the agent, leave a stale copy of it, take its interpreter away, give
a resource hostile parameter values) and read the story in the events.
Bounds are generous (a loaded 2-core machine must not fail them); the
figures are in ``bench/agent.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from dpe.engine import Engine
from dpe.guest_agent import agent_source
from dpe.interfaces import Instance
from foundation.paths import Paths
from tests.integration.agent_support import OcfProvider, ocf_provider
from tests.integration.test_engine_local import (
    DAEMON,
    OPTIONS,
    Local,
    daemons,
    failure,
    key_cache,
    local_world,
    until,
)
from tests.integration.test_local_driver_support import instance_processes

pytestmark = pytest.mark.integration
__all__ = ["key_cache", "ocf_provider"]  # fixtures used here

DEATH_BOUND = 2.0  # kill -9 -> the resource's failed event; the target is 100 ms (bench/)
HEARTBEAT = {"interval": 0.2, "timeout": 0.6, "health_interval": 1}
ECHOES = """#!/bin/sh
# start records its parameter where the test can read it; no shell ever sees it
case "$1" in
start) printf '%s' "$OCF_RESKEY_value" > "$HA_RSCTMP/value"; touch "$HA_RSCTMP/up"; exit 0;;
stop) rm -f "$HA_RSCTMP/up"; exit 0;;
monitor) test -e "$HA_RSCTMP/up" || exit 7; exit 0;;
*) exit 0;;
esac
"""


@pytest.fixture
async def active(pcloud_home: Paths, key_cache: Path) -> AsyncIterator[Local]:
    async with local_world(pcloud_home, key_cache, "active", name="solo") as setup:
        yield setup


def solo(home: Path, **resource: Any) -> dict[str, Any]:
    """One assembly running a small daemon watched through its pidfile."""
    daemon = home / "daemon.sh"
    daemon.write_text(DAEMON)
    daemon.chmod(0o755)
    app = {
        "name": "app",
        "type": "anything",
        "monitor_interval": 60,  # the watch, not the monitor, must see a death
        "timeouts": {"monitor": "5s", "start": "5s", "stop": "5s"},
        "parameters": {"binfile": str(daemon), "cmdline_options": "peer"},
        **resource,
    }
    return {
        "name": "solo",
        "heartbeat": HEARTBEAT,
        "assemblies": [{"name": "a1", "resources": [app]}],
    }


def agent_pid(instance: Instance) -> int | None:
    """The host pid of the guest's running agent (``... agent-<hash>.py --lock ...``)."""
    for stat in instance_processes(instance):
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{stat.pid}/cmdline").read_bytes().split(b"\0")
            if stat.alive and b"--lock" in argv and any(b"/agent-" in w for w in argv):
                return stat.pid
    return None


def monitoring(engine: Engine) -> dict[str, str]:
    return dict(engine.status()["assemblies"]["a1"]["monitoring"])


async def new_agent(local: Local, engine: Engine, old: int) -> int:
    """The pid of the agent that replaced ``old``, once the DPE heard its hello
    (stopped before that, the new agent fails the handshake, not the heartbeat)."""
    instance = local.instance(engine, "a1")
    await until(lambda: agent_pid(instance) not in (None, old), 15, "another agent")
    pid = agent_pid(instance)
    assert pid is not None
    await until(lambda: restarted(local.story("solo/a1")), 15, "the new agent's hello")
    return pid


def restarted(lines: list[str]) -> bool:
    """The latest restart of the agent ended with its hello."""
    marks = [i for i, line in enumerate(lines) if "guest agent started again: " in line]
    starts = [i for i, line in enumerate(lines) if "): starting it again" in line]
    return bool(marks) and (not starts or marks[-1] > starts[-1])


async def test_a_killed_watched_process_fails_its_resource_at_once(active: Local) -> None:
    engine = await active.running(solo(active.paths.state_dir))
    assert monitoring(engine)["mode"] == "active"
    [pid] = daemons(active.paths.state_dir)
    mark = len(active.events)
    killed = time.time()
    os.kill(pid, signal.SIGKILL)
    await active.until_line("solo/a1/app failed: monitor returned 1 (unknown error)", 10, mark)
    failed = next(e for e in active.events[mark:] if e.state == "failed")
    assert failed.time - killed < DEATH_BOUND  # the monitor interval is 60 s
    await until(lambda: engine.cell.state == "running", 15, "running again")
    assert len(daemons(active.paths.state_dir)) == 1


async def test_a_killed_agent_is_detected_and_started_again(active: Local) -> None:
    engine = await active.running(solo(active.paths.state_dir))
    instance = active.instance(engine, "a1")
    old = agent_pid(instance)
    assert old is not None
    mark = len(active.events)
    os.kill(old, signal.SIGKILL)
    again = "solo/a1 running: guest agent started again: "
    await until(lambda: any(x.startswith(again) for x in active.story("solo/a1")), 15, again)
    lines = active.story("solo/a1")
    assert again + _agent(engine) in lines  # the new agent's pid, as status shows it
    assert any("guest agent lost (the agent exited with status 137" in line for line in lines)
    assert await new_agent(active, engine, old)
    assert failure(lines) is None  # only the agent was lost
    # the new agent watches the daemon as the old one did
    [pid] = daemons(active.paths.state_dir)
    mark = len(active.events)
    os.kill(pid, signal.SIGKILL)
    await active.until_line("solo/a1/app failed: monitor returned 1 (unknown error)", 10, mark)


def _agent(engine: Engine) -> str:
    return monitoring(engine)["reason"]


async def test_a_stuck_agent_is_replaced_and_stuck_again_fails_the_assembly(active: Local) -> None:
    """SIGSTOP: its heartbeat stops, the connection still answers.  Started again once
    (the new agent kills the stopped one through the guest's lock file); stuck again
    within the window, the assembly fails per its policy (fence, then a new instance)."""
    engine = await active.running(solo(active.paths.state_dir))
    instance = active.instance(engine, "a1")
    stuck = agent_pid(instance)
    assert stuck is not None
    os.kill(stuck, signal.SIGSTOP)
    second = await new_agent(active, engine, stuck)
    await until(lambda: not Path(f"/proc/{stuck}").exists(), 10, "the stuck agent killed")
    assert failure(active.story("solo/a1")) is None
    os.kill(second, signal.SIGSTOP)
    try:
        await until(lambda: failure(active.story("solo/a1")) is not None, 15, "a1 failed")
        assert failure(active.story("solo/a1")) == (
            "guest agent lost again within 60 s of its restart:"
            " no heartbeat from the agent for 0.6 s"
        ) or "no heartbeat from the agent for 0." in (failure(active.story("solo/a1")) or "")
        await until(lambda: active.instance_id(engine, "a1") != instance.instance_id, 20)
        await until(lambda: engine.cell.state == "running", 20, "running on a new instance")
    finally:
        with contextlib.suppress(OSError):
            os.kill(second, signal.SIGKILL)
    assert not Path(f"/proc/{second}").exists() or not Path(f"/proc/{stuck}").exists()
    assert monitoring(engine)["mode"] == "active"


async def test_a_stale_agent_left_by_an_older_dped_is_replaced(active: Local) -> None:
    document = solo(active.paths.state_dir)
    engine = await active.running(document)
    instance = active.instance(engine, "a1")
    await engine.shutdown()  # this dped leaves; the instance and its daemon stay
    copy = Path(instance.extra["dir"]) / "cache" / "pacemaker-cloud" / agent_source().file_name
    copy.write_text("# the agent of an older version\n")
    successor = await active.running(document)  # adopts the instance
    assert active.instance(successor, "a1").instance_id == instance.instance_id
    assert copy.read_bytes() == agent_source().text
    assert monitoring(successor)["mode"] == "active"


async def test_a_guest_without_the_interpreter_is_monitored_passively(active: Local) -> None:
    from dataclasses import replace

    active.options = replace(OPTIONS, agent_python="python3-missing")
    engine = await active.running(solo(active.paths.state_dir))
    assert "solo/a1 connecting: monitoring passively: no python3-missing on the guest" in (
        active.story("solo/a1")
    )
    assert monitoring(engine) == {"mode": "passive", "reason": "no python3-missing on the guest"}
    assert agent_pid(active.instance(engine, "a1")) is None
    [pid] = daemons(active.paths.state_dir)
    os.kill(pid, signal.SIGKILL)  # the SSH monitor sees it (within its 60 s: not waited for)
    await asyncio.sleep(0.5)
    assert engine.cell.state == "running"


async def test_hostile_parameter_values_stay_inert_through_the_agent(
    active: Local, ocf_provider: OcfProvider
) -> None:
    canary = active.paths.state_dir / "pwned"
    hostile = f"$(touch {canary}); `touch {canary}`; ' \" ; touch {canary} #\n| touch {canary}"
    ocf_provider.install("echoes", ECHOES)
    resource = {
        "name": "r",
        "provider": ocf_provider.name,
        "type": "echoes",
        "monitor_interval": 1,
        "parameters": {"value": hostile},
    }
    document = {
        "name": "solo",
        "heartbeat": HEARTBEAT,
        "assemblies": [{"name": "a1", "resources": [resource]}],
    }
    engine = await active.running(document)
    instance = active.instance(engine, "a1")
    assert monitoring(engine)["mode"] == "active"
    value = Path(instance.extra["dir"]) / "run" / "resource-agents" / "value"
    assert value.read_text() == hostile
    assert not canary.exists()
