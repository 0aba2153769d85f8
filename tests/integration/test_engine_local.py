"""The engine with its real parts: local sshd guests, SSH, OCF agents, SQLite.

Three assemblies: ``ocf:heartbeat:Dummy`` on a1 and a2, ``ocf:heartbeat:anything``
on a3 running a small daemon whose argument is a reference to a1's address,
started after a1's Dummy.  The tests break things from the outside (kill the
daemon, kill a whole instance, make an agent hang, SIGSTOP an sshd) and read
the story in the events.  Intervals are short (monitor 0.5 s, heartbeat
0.2/0.6 s); every wait polls a condition with a bound.  Every test runs in
both monitoring modes (the guest agent, or SSH alone): what detects each
fault differs between them.

The helpers here are shared with ``test_dped.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dpe.drivers.local import LocalDriver
from dpe.engine import Engine, Planner
from dpe.engine_timing import EngineOptions
from dpe.interfaces import Instance
from dpe.runtime import StoreRuntime
from dpe.transport import SshTransport
from foundation.events import Event
from foundation.keyfiles import key_paths, load_assembly_keys
from foundation.model import Deployable, parse
from foundation.paths import Paths
from foundation.store import Store

pytestmark = pytest.mark.integration

ASSEMBLIES = ("a1", "a2", "a3", "a4")
DAEMON = """#!/bin/sh
# a small daemon: its argument is its peer's address
while :; do sleep 1; done
"""
OPTIONS = EngineOptions(
    lease_ttl=2.0,
    lease_renew=0.5,
    lease_wait=5.0,
    connect_timeout=5.0,
    create_timeout=20.0,
    health_timeout=2.0,
)


# ---------------------------------------------------------------------------
# keys, documents, the world outside


@pytest.fixture(scope="session")
def key_cache() -> Iterator[Path]:
    """Key pairs for the test assemblies, made once (``ssh-keygen``, PEM, the keyfiles layout)."""
    directory = Path(tempfile.mkdtemp(prefix="pc-keys-", dir="/tmp"))
    try:
        for assembly in ASSEMBLIES:
            private, _, host, _ = key_paths(directory, assembly)
            for path, comment in ((private, f"root@{assembly}"), (host, f"host@{assembly}")):
                keygen = ["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-m", "PEM", "-N", ""]
                subprocess.run([*keygen, "-C", comment, "-f", str(path)], check=True)
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def install_keys(cache: Path, paths: Paths) -> None:
    paths.keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for item in cache.iterdir():
        shutil.copy2(item, paths.keys_dir / item.name)


def trio(home: Path, name: str = "trio", **escalation: dict[str, Any]) -> dict[str, Any]:
    """The three-assembly document; ``escalation`` by ``deployable``, ``a3`` or ``app``."""
    daemon = home / "daemon.sh"
    daemon.write_text(DAEMON)
    daemon.chmod(0o755)
    hang = home / "hang"
    app = {
        "name": "app",
        "type": "anything",
        "monitor_interval": 0.5,
        "timeouts": {"monitor": "1.5s", "start": "5s", "stop": "5s"},
        "parameters": {
            "binfile": str(daemon),
            "cmdline_options": {"ref": "a1:ipaddress"},
            "monitor_hook": f"if test -e {hang}; then sleep 30; fi",
        },
        "escalation": escalation.get("app", {}),
    }
    return {
        "name": name,
        "heartbeat": {"interval": 0.2, "timeout": 0.6, "health_interval": 1},
        "escalation": escalation.get("deployable", {}),
        "assemblies": [
            {"name": "a1", "resources": [_dummy("d1")]},
            {"name": "a2", "resources": [_dummy("d2")]},
            {"name": "a3", "resources": [app], "escalation": escalation.get("a3", {})},
        ],
        "constraints": [{"first": "a1/d1", "then": "a3/app"}],
    }


def _dummy(name: str) -> dict[str, Any]:
    return {"name": name, "type": "Dummy", "monitor_interval": 0.5}


def store_document(store: Store, document: Deployable) -> None:
    """Put a whole document in the store as cped's import does."""
    doc = document.to_dict()
    doc["assemblies"] = [a.name for a in document.assemblies]
    store.insert_deployable(doc)
    for assembly in document.assemblies:
        store.insert_assembly(assembly.to_dict(), deployable=document.name)


def daemons(home: Path) -> dict[int, list[str]]:
    """pid -> argv of every running copy of this home's daemon."""
    script = str(home / "daemon.sh")
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        words = [w.decode() for w in argv if w]
        if script in words and state != "Z":
            found[int(entry.name)] = words
    return found


def namespace_members(init_pid: int) -> list[int]:
    """Every process in the PID namespace whose init is ``init_pid``."""
    namespace = os.readlink(f"/proc/{init_pid}/ns/pid")
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "ns" / "pid") == namespace:
                    members.append(int(entry.name))
            except OSError:
                continue
    return members


def alive(pids: list[int], namespace: str) -> list[int]:
    """Those still running in ``namespace`` (zombies and reused pids do not count)."""
    living = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if state != "Z" and os.readlink(f"/proc/{pid}/ns/pid") == namespace:
                living.append(pid)
        except OSError:
            continue
    return living


def kill_instance(instance: Instance) -> None:
    """Kill the guest's init: the kernel kills everything in its PID namespace."""
    os.kill(int(instance.extra["init_pid"]), signal.SIGKILL)


def stop_sshd(instance: Instance) -> list[int]:
    """SIGSTOP every sshd of the guest (the listener and our session)."""
    stopped = []
    for pid in namespace_members(int(instance.extra["init_pid"])):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "sshd":
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
        except OSError:
            continue
    return stopped


async def until(condition: Callable[[], bool], within: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:g} s: {what or condition}")
        await asyncio.sleep(0.05)


def story(events: list[Event], subject: str | None = None) -> list[str]:
    lines = []
    for e in events:
        if subject is None or e.subject == subject:
            lines.append(f"{e.subject} {e.state}: {e.reason}")
    return lines


def failure(lines: list[str]) -> str | None:
    """The reason of the first ``failed`` line, if any."""
    reasons = [line.split(" failed: ", 1)[1] for line in lines if " failed: " in line]
    return reasons[0] if reasons else None


def in_order(lines: list[str], expected: list[str]) -> bool:
    """Every expected line appears, in this order (others may come between);
    otherwise says which one is missing, with the whole story."""
    position = 0
    for line in lines:
        if position < len(expected) and line == expected[position]:
            position += 1
    story = "\n  ".join(lines)
    assert position == len(expected), f"missing {expected[position]!r} in:\n  {story}"
    return True


async def destroy_everything(paths: Paths, deployable: str) -> None:
    driver = LocalDriver(paths, {})
    for instance in await driver.list(deployable):
        await driver.destroy(instance.instance_id)


# ---------------------------------------------------------------------------
# an engine in this process


@dataclass
class Local:
    paths: Paths
    store: Store
    driver: LocalDriver
    monitoring: str = "active"  # of every document given
    options: EngineOptions = OPTIONS
    events: list[Event] = field(default_factory=list)
    engines: list[Engine] = field(default_factory=list)

    def engine(self, document: dict[str, Any], planner: Planner | None = None) -> Engine:
        parsed = parse({**document, "monitoring": self.monitoring})
        engine = Engine(
            parsed,
            driver=self.driver,
            transport=SshTransport(),
            runtime=StoreRuntime(self.store, parsed.name),
            keys=lambda a: load_assembly_keys(self.paths.keys_dir, a),
            options=self.options,
            planner=planner,
        )
        engine.listeners.append(self.events.append)
        self.engines.append(engine)
        return engine

    async def running(self, document: dict[str, Any], planner: Planner | None = None) -> Engine:
        engine = self.engine(document, planner)
        await engine.start()
        await until(lambda: engine.cell.state == "running", 20, "the deployable running")
        return engine

    def instance(self, engine: Engine, assembly: str) -> Instance:
        instance = engine.runners.assemblies[assembly].instance
        assert instance is not None
        return instance

    def instance_id(self, engine: Engine, assembly: str) -> str | None:
        instance = engine.runners.assemblies[assembly].instance
        return instance.instance_id if instance else None

    def story(self, subject: str | None = None) -> list[str]:
        return story(self.events, subject)

    async def until_line(self, line: str, within: float = 20.0, since: int = 0) -> None:
        """Until the events (from index ``since``) have ``line``; the story if not."""
        try:
            await until(lambda: line in story(self.events[since:]), within, line)
        except AssertionError as error:
            raise AssertionError(f"{error}\n  " + "\n  ".join(self.story())) from None


@contextlib.asynccontextmanager
async def local_world(
    pcloud_home: Paths, key_cache: Path, monitoring: str, name: str = "trio"
) -> AsyncIterator[Local]:
    """Engines in this process on local guests; everything ended and destroyed after."""
    install_keys(key_cache, pcloud_home)
    store = Store.open(pcloud_home.store_file)
    setup = Local(pcloud_home, store, LocalDriver(pcloud_home, {}), monitoring)
    try:
        yield setup
    finally:
        for engine in setup.engines:
            await engine.shutdown()
        (pcloud_home.state_dir / "hang").unlink(missing_ok=True)
        await destroy_everything(pcloud_home, name)
        store.close()


@pytest.fixture(params=["active", "passive"])
async def local(
    request: pytest.FixtureRequest, pcloud_home: Paths, key_cache: Path
) -> AsyncIterator[Local]:
    """Both monitoring modes: what is detected, and how, differs between them."""
    async with local_world(pcloud_home, key_cache, request.param) as setup:
        yield setup


# ---------------------------------------------------------------------------


async def test_three_assemblies_come_up_in_order_and_a_killed_daemon_is_restarted(
    local: Local,
) -> None:
    engine = await local.running(trio(local.paths.state_dir))
    lines = local.story()
    assert lines.index("trio/a1/d1 running: started") < lines.index(
        "trio/a3/app starting: starting (ocf:heartbeat:anything)"
    )
    running = daemons(local.paths.state_dir)
    assert len(running) == 1
    [(pid, argv)] = running.items()
    assert argv[-1] == local.instance(engine, "a1").address  # the reference, resolved

    os.kill(pid, signal.SIGKILL)
    await until(lambda: bool(set(daemons(local.paths.state_dir)) - {pid}), 10, "a new daemon")
    await until(lambda: engine.cell.state == "running", 10)
    assert in_order(
        local.story("trio/a3/app"),
        [
            "trio/a3/app failed: monitor returned 1 (unknown error)",  # a pidfile, no process
            "trio/a3/app stopping: stopping",
            "trio/a3/app stopped: stopped",
            "trio/a3/app starting: starting (ocf:heartbeat:anything)",
            "trio/a3/app running: started",
        ],
    )
    assert len(daemons(local.paths.state_dir)) == 1
    assert len(await local.driver.list("trio")) == 3


async def test_a_destroyed_instance_is_recreated_reprobed_and_restarted(local: Local) -> None:
    engine = await local.running(trio(local.paths.state_dir))
    old = local.instance(engine, "a2")
    namespace = os.readlink(f"/proc/{old.extra['init_pid']}/ns/pid")
    members = namespace_members(int(old.extra["init_pid"]))
    kill_instance(old)
    await until(lambda: local.instance_id(engine, "a2") not in (None, old.instance_id), 15)
    await until(lambda: engine.cell.state == "running", 15)
    new = local.instance(engine, "a2")
    lines = local.story()
    assert in_order(
        lines,
        [
            "trio/a2 fencing: fencing the failed instance",
            f"trio/a2 stopped: instance {old.instance_id} destroyed",
            "trio/a2 creating: creating an instance (local)",
            f"trio/a2 running: connected to {new.ssh_host}:{new.ssh_port}",
            "trio/a2/d2 stopped: probe: not running",
            "trio/a2/d2 starting: starting (ocf:heartbeat:Dummy)",
            "trio/a2/d2 running: started",
        ],
    )
    assert [line for line in lines if line.startswith("trio/a2 failed:")]
    assert alive(members, namespace) == []
    assert [i.instance_id for i in await local.driver.list("trio") if i.assembly == "a2"] == [
        new.instance_id
    ]
    assert "trio/a1/d1 stopping: stopping" not in lines  # the others kept running


async def test_a_hanging_agent_is_failed_by_its_timeout(local: Local) -> None:
    engine = await local.running(trio(local.paths.state_dir))
    hang = local.paths.state_dir / "hang"
    hang.touch()
    await local.until_line("trio/a3/app failed: monitor timed out after 1.5 s", 10)
    hang.unlink()
    await until(lambda: engine.cell.state == "running", 15)
    assert local.story("trio/a3/app")[-1] == "trio/a3/app running: started"


async def test_a_stopped_sshd_is_detected_by_the_heartbeat(local: Local) -> None:
    engine = await local.running(trio(local.paths.state_dir))
    old = local.instance(engine, "a1")
    stop_sshd(old)
    started = time.monotonic()
    await until(lambda: failure(local.story("trio/a1")) is not None, 5, "a1 failed")
    detected = time.monotonic() - started
    evidence = r"loop lag \d+\.\d s; fresh keepalive: no answer within 0\.[26] s"
    reason = rf"no heartbeat for 0\.[6-9] s \((guest agent silent; )?{evidence}\)"
    assert re.fullmatch(reason, failure(local.story("trio/a1")) or "")
    # the timeout, a fresh keepalive (a whole timeout if this loop lagged), and slack
    assert detected < 0.6 + 0.6 + 1.0
    await until(lambda: engine.cell.state == "running", 15)
    assert local.instance(engine, "a1").instance_id != old.instance_id
    # what follows a1/d1 was stopped and started again after it
    assert in_order(
        local.story(),
        [
            f"trio/a1 failed: {failure(local.story('trio/a1'))}",
            "trio/a3/app stopped: stopped",
            "trio/a1/d1 running: started",
            "trio/a3/app running: started",
        ],
    )


async def test_repeated_failures_escalate_level_by_level(local: Local) -> None:
    document = trio(
        local.paths.state_dir,
        app={"failures": 1, "period": 60},  # every failure escalates to the assembly
        a3={"failures": 2, "period": 60},
        deployable={"failures": 2, "period": 600},
    )
    engine = await local.running(document)

    async def kill_daemon_and_wait(expect: str) -> None:
        [pid] = daemons(local.paths.state_dir)
        mark = len(local.events)
        os.kill(pid, signal.SIGKILL)
        await local.until_line(expect, 20, since=mark)

    await kill_daemon_and_wait("trio/a3 failed: app: 1 failure in 60 s: escalating to assembly")
    await until(lambda: engine.cell.state == "running", 20)
    await kill_daemon_and_wait(
        "trio recovering: assembly a3: 2 failures in 60 s: escalating to deployable:"
        " restarting every assembly"
    )
    await until(lambda: engine.cell.state == "running", 20)
    instances = {i.assembly: i for i in await local.driver.list("trio")}
    assert len(instances) == 3
    assert all(f"trio/{a} stopped: instance" in " ".join(local.story()) for a in ("a1", "a2", "a3"))
    await kill_daemon_and_wait("trio/a3 failed: app: 1 failure in 60 s: escalating to assembly")
    await until(lambda: engine.cell.state == "running", 20)
    await kill_daemon_and_wait(
        "trio failed: 2 failures in 600 s: no more recovery until it is started again"
    )
    lines = local.story("trio")
    assert (
        lines[-1] == "trio failed: 2 failures in 600 s: no more recovery until it is started again"
    )
    await asyncio.sleep(1.5)
    assert daemons(local.paths.state_dir) == {}  # left alone: nothing restarted it
    runtime = local.store.get_runtime("trio")
    assert runtime["deployable"][""]["state"] == "failed"
