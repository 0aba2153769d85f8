"""The guest agent, measured: kill -> report latency, CPU per monitor, idle CPU.

Real local guests (sshd as root in their own PID namespaces) and dped's own
client of the agent (``dpe.agent_channel``), without cped and the engine, so
the "dped" figures are this process's, doing what a dped does with the agent:
nothing per unchanged monitor, reading a heartbeat a second per guest.

- **kill -> report**: ``ocf:heartbeat:anything`` (``/bin/sleep``) with its
  monitor every 1 s and every 60 s, watched by the agent; SIGKILL to the
  process at a random moment; times (from just before the kill) to the
  agent's ``died``, to the monitor's confirmation (the failure dped counts),
  and to running again when dped answers at once with stop, start and a new
  monitor (``running``: the start returned; ``monitored``: the new monitor's
  first result).
- **CPU per Dummy monitor**: 10 Dummy resources monitored every 100 ms, once
  by the agent (recurring) and once the passive way (each monitor a command
  on its own SSH channel, paced to the same rate).  Per monitor: the guest's
  CPU (every process of its PID namespace, with the children they reaped) and
  this process's CPU, and their sum ("machine").
- **idle**: 3 guests x 2 Dummy resources, monitors every 10 s; this process's
  CPU per second with the agents (their heartbeats) and the passive way
  (an SSH keepalive per guest every second, an ``uptime`` health command every
  10 s, each monitor over SSH); the agents beat at one phase, as a dped's do.
  Each idle figure is the median of three windows.
- **idle dped**: the same deployable run by a real cped and dped, in each
  monitoring mode; the dped's CPU (every thread's, from ``/proc``) over a
  window, everything it does included (the lease renewed every second, the
  driver asked every 10 s).

    .venv/bin/python -m bench.agent [--quick] [--json FILE]

Run as root from the repository root.  It stops, by pid, every process it
started (the guests, through the local driver).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import shutil
import signal
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    CLOCK_TICKS,
    Cped,
    dummy_deployable,
    machine,
    resources_not_running,
    stats,
    thread_cpu_ns,
    until,
)
from dpe import agent_ops, agents
from dpe.agent_channel import (
    AgentChannel,
    AgentEvent,
    AgentSettings,
    MonitorChange,
    ProcessDied,
    start_agent,
)
from dpe.drivers import _procfs
from dpe.drivers.local import LocalDriver
from dpe.engine_timing import deployable_phase
from dpe.interfaces import Instance
from dpe.transport import SshConnection, SshTransport
from foundation.keyfiles import AssemblyKeys
from foundation.model import Assembly, Resource, new_uuid
from foundation.paths import resolve
from images.keys import write_assembly_keys

APP = Resource(
    name="app", type="anything", parameters={"binfile": "/bin/sleep", "cmdline_options": "600"}
)
WAIT = 30.0


@dataclass
class Guest:
    instance: Instance
    connection: SshConnection

    @property
    def directory(self) -> Path:
        return Path(self.instance.extra["dir"])


class Lab:
    """Local guests on a temporary home; all destroyed on the way out."""

    def __init__(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="pc-ba-", dir="/tmp"))
        self.paths = resolve({"PCLOUD_HOME": str(self.home)})
        self.paths.ensure()
        self.driver = LocalDriver(self.paths)
        self.keys: AssemblyKeys = write_assembly_keys(self.paths.keys_dir, "guest")
        self.guests: list[Guest] = []

    async def guest(self, name: str) -> Guest:
        instance = await self.driver.create("bench", Assembly(name, new_uuid()), self.keys)
        connection = await SshTransport().connect(instance, self.keys, 10.0)
        made = Guest(instance, connection)
        self.guests.append(made)
        return made

    async def close(self) -> None:
        for guest in self.guests:
            await guest.connection.close()
            await self.driver.destroy(guest.instance.instance_id)
        shutil.rmtree(self.home, ignore_errors=True)


# ---------------------------------------------------------------------------
# what is measured from /proc


def _times(pid: int, children: bool = True) -> float:
    """utime + stime (+ cutime + cstime), in seconds (0 for a process gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11 : 15 if children else 13]) / CLOCK_TICKS


def guest_cpu(instance: Instance) -> float:
    """CPU seconds of every live process of the guest, with the children they reaped."""
    namespace = _procfs.pid_namespace(int(instance.extra["init_pid"]))
    assert namespace, "the guest has no PID namespace of its own (run as root)"
    return sum(_times(stat.pid) for stat in _procfs.in_pid_namespace(namespace))


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def host_pid(instance: Instance, guest_pid: int) -> int:
    """The host's pid of the process the guest knows as ``guest_pid`` (``NSpid``)."""
    namespace = _procfs.pid_namespace(int(instance.extra["init_pid"]))
    assert namespace
    for stat in _procfs.in_pid_namespace(namespace):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{stat.pid}/status").read_text().splitlines():
                if line.startswith("NSpid:") and int(line.split()[-1]) == guest_pid:
                    return stat.pid
    raise LookupError(f"no process {guest_pid} in the guest")


async def next_of(
    events: AsyncIterator[AgentEvent], wanted: Callable[[AgentEvent], bool]
) -> tuple[AgentEvent, float]:
    """The next event ``wanted`` accepts, and when it came."""
    while True:
        event = await asyncio.wait_for(anext(events), WAIT)
        if wanted(event):
            return event, time.perf_counter()


def failed(event: AgentEvent) -> bool:
    return isinstance(event, MonitorChange) and event.outcome.exit_status != 0


def succeeded(event: AgentEvent) -> bool:
    return isinstance(event, MonitorChange) and event.outcome.exit_status == 0


# ---------------------------------------------------------------------------
# kill -> report


async def kill_to_report(guest: Guest, interval: float, kills: int) -> dict[str, Any]:
    agent = await start_agent(guest.connection, label=guest.instance.assembly)
    times: dict[str, list[float]] = {"died": [], "failed": [], "running": [], "monitored": []}
    pidfile = guest.directory / "run" / "anything_app.pid"
    try:
        await _must_succeed(agent.run(agent_ops.op_message(APP, "start")))
        key = agent_ops.monitor_key("app", interval)
        events = agent.events()
        await _schedule_app(agent, key, interval)
        await next_of(events, succeeded)
        for _ in range(kills):
            await asyncio.sleep(random.uniform(0.3, 1.0))  # anywhere in a monitor cycle
            victim = host_pid(guest.instance, int(pidfile.read_text()))
            killed = time.perf_counter()
            os.kill(victim, signal.SIGKILL)
            _, died = await next_of(events, lambda e: isinstance(e, ProcessDied))
            _, confirmed = await next_of(events, failed)
            await _must_succeed(agent.run(agent_ops.op_message(APP, "stop")))
            await _must_succeed(agent.run(agent_ops.op_message(APP, "start")))
            running = time.perf_counter()
            await _schedule_app(agent, key, interval)
            _, monitored = await next_of(events, succeeded)
            for name, when in zip(times, (died, confirmed, running, monitored), strict=True):
                times[name].append(when - killed)
    finally:
        with contextlib.suppress(Exception):
            await agent.run(agent_ops.op_message(APP, "stop"))
        await agent.close()
    return {name: stats(values) for name, values in times.items()}


async def _schedule_app(agent: AgentChannel, key: str, interval: float) -> None:
    op = agent_ops.op_message(APP, "monitor", interval=interval)
    await agent.schedule(key, op, interval, agent_ops.watch_message(APP))


async def _must_succeed(outcome: Awaitable[agent_ops.AgentOutcome]) -> None:
    result = await outcome
    if result.exit_status != 0:
        raise RuntimeError(f"operation failed: {result}")


# ---------------------------------------------------------------------------
# CPU per Dummy monitor


DUMMIES = [Resource(name=f"d{n}") for n in range(10)]
FAST = 0.1
HEARTBEAT_POLL = 0.05


async def cpu_active(guest: Guest, seconds: float) -> dict[str, float]:
    agent = await start_agent(guest.connection, label=guest.instance.assembly)
    try:
        for dummy in DUMMIES:
            await _must_succeed(agent.run(agent_ops.op_message(dummy, "start")))
            op = agent_ops.op_message(dummy, "monitor", interval=FAST)
            await agent.schedule(agent_ops.monitor_key(dummy.name, FAST), op, FAST)
        await asyncio.sleep(2.0)  # past the first results
        itself = host_pid(guest.instance, agent.hello.pid)
        await _heartbeat(agent)
        start = (guest_cpu(guest.instance), own_cpu(), agent.agent_runs)
        agent_start = _times(itself, children=False)
        await asyncio.sleep(seconds)
        await _heartbeat(agent)
        end = (guest_cpu(guest.instance), own_cpu(), agent.agent_runs)
        agent_end = _times(itself, children=False)
        for dummy in DUMMIES:
            await agent.cancel(agent_ops.monitor_key(dummy.name, FAST))
    finally:
        await agent.close()
    figures = _per_monitor(start, end)
    own = (agent_end - agent_start) / figures["monitors"] * 1000
    return figures | {"agent_itself_ms": round(own, 4)}


async def _heartbeat(agent: AgentChannel) -> None:
    """Until the next heartbeat (its ``runs`` is then current).

    Polled every 50 ms: this process's CPU is the "dped" figure, and the
    second wait falls inside its window (every 5 ms, it was up to 200 wake-ups
    there, a third of what it measured)."""
    seen = agent.heartbeats
    while agent.heartbeats == seen:
        await asyncio.sleep(HEARTBEAT_POLL)


async def cpu_passive(guest: Guest, seconds: float) -> dict[str, float]:
    done = 0
    deadline = time.monotonic() + seconds

    async def monitor(dummy: Resource) -> None:
        nonlocal done
        line = agents.command(dummy, "monitor", interval=FAST)
        next_run = time.monotonic()
        while time.monotonic() < deadline:
            result = await guest.connection.run(line, 20.0)
            assert result.exit_status == 0, result
            done += 1
            next_run += FAST
            await asyncio.sleep(max(0.0, next_run - time.monotonic()))

    await asyncio.sleep(1.0)  # the agent before is gone
    start = (guest_cpu(guest.instance), own_cpu(), 0)
    await asyncio.gather(*(monitor(d) for d in DUMMIES))
    end = (guest_cpu(guest.instance), own_cpu(), done)
    return _per_monitor(start, end)


def _per_monitor(start: tuple[float, float, int], end: tuple[float, float, int]) -> dict[str, Any]:
    monitors = end[2] - start[2]
    guest_ms = (end[0] - start[0]) / monitors * 1000
    own_ms = (end[1] - start[1]) / monitors * 1000
    return {
        "monitors": monitors,
        "guest_ms": round(guest_ms, 4),
        "dped_ms": round(own_ms, 4),
        "machine_ms": round(guest_ms + own_ms, 4),
    }


# ---------------------------------------------------------------------------
# idle


IDLE = [Resource(name=f"i{n}") for n in range(2)]
SLOW = 10.0
SETTLE = 10.0  # after everything runs, before the window (the first monitors, the lease)
WINDOWS = 3


async def idle_active(guests: list[Guest], seconds: float) -> float:
    # as a dped starts them: the guests of one deployable beat at one phase
    settings = AgentSettings(heartbeat_phase=deployable_phase("bench", 1.0))
    channels = [
        await start_agent(g.connection, settings, label=g.instance.assembly) for g in guests
    ]
    try:
        for agent in channels:
            for dummy in IDLE:
                await _must_succeed(agent.run(agent_ops.op_message(dummy, "start")))
                op = agent_ops.op_message(dummy, "monitor", interval=SLOW)
                await agent.schedule(agent_ops.monitor_key(dummy.name, SLOW), op, SLOW)
        return await _own_share(seconds)
    finally:
        for agent in channels:
            await agent.close()


async def idle_passive(guests: list[Guest], seconds: float) -> float:
    async def keep_alive(guest: Guest) -> None:
        while True:
            await guest.connection.keepalive(3.0)
            await asyncio.sleep(1.0)

    async def every(period: float, command: str, guest: Guest) -> None:
        while True:
            await guest.connection.run(command, 20.0)
            await asyncio.sleep(period)

    tasks = [asyncio.ensure_future(keep_alive(g)) for g in guests]
    tasks += [asyncio.ensure_future(every(10.0, "uptime", g)) for g in guests]
    for guest in guests:
        for dummy in IDLE:
            line = agents.command(dummy, "monitor", interval=SLOW)
            tasks.append(asyncio.ensure_future(every(SLOW, line, guest)))
    try:
        return await _own_share(seconds)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def idle_dped(monitoring: str, seconds: float) -> float:
    """A real dped's CPU running 3 x 2 Dummy resources (10 s monitors), % of a core."""
    names = [f"a{n}" for n in range(3)]
    document = dummy_deployable("idle", names, len(IDLE), SLOW) | {"monitoring": monitoring}
    with Cped() as cped:
        cped.keys(names)
        cped.client.put_deployable("idle", document)
        cped.client.start_deployable("idle")
        until(lambda: not resources_not_running(cped, ["idle"]), 120.0, "all running", 0.5)
        time.sleep(SETTLE)
        [dped] = cped.dpeds()
        shares = []
        for _ in range(WINDOWS):
            cpu, wall = thread_cpu_ns(dped), time.monotonic()
            time.sleep(seconds / WINDOWS)
            used = (thread_cpu_ns(dped) - cpu) / 1e9
            shares.append(used / (time.monotonic() - wall) * 100)
        return round(statistics.median(shares), 4)


async def _own_share(seconds: float) -> float:
    """This process's CPU over ``seconds`` (after a settling second), in % of a core:
    the median of ``WINDOWS`` windows (one wake-up of the host's own can double one)."""
    await asyncio.sleep(1.0)
    shares = []
    for _ in range(WINDOWS):
        cpu, wall = own_cpu(), time.monotonic()
        await asyncio.sleep(seconds / WINDOWS)
        shares.append((own_cpu() - cpu) / (time.monotonic() - wall) * 100)
    return round(statistics.median(shares), 4)


# ---------------------------------------------------------------------------


async def run(quick: bool) -> dict[str, Any]:
    kills, window, idle_window = (10, 10.0, 30.0) if quick else (20, 20.0, 90.0)
    lab = Lab()
    report: dict[str, Any] = {"machine_before": machine(), "quick": quick}
    try:
        first = await lab.guest("a1")
        report["kill_to_report"] = {
            f"{interval:g}s": await kill_to_report(first, interval, kills)
            for interval in (1.0, 60.0)
        }
        second = await lab.guest("a2")
        active = await cpu_active(second, window)
        passive = await cpu_passive(second, window)
        ratio = round(active["machine_ms"] / passive["machine_ms"], 3)
        report["cpu_per_monitor"] = {"active": active, "passive": passive, "ratio": ratio}
        guests = [first, second, await lab.guest("a3")]
        report["idle_percent_of_a_core"] = {
            "active": await idle_active(guests, idle_window),
            "passive": await idle_passive(guests, idle_window),
        }
    finally:
        await lab.close()
    report["idle_dped_percent_of_a_core"] = {
        mode: await asyncio.to_thread(idle_dped, mode, idle_window)
        for mode in ("active", "passive")
    }
    report["machine_after"] = machine()
    return report


def table(report: dict[str, Any]) -> str:
    lines = ["| figure | median | p95 |", "|---|---|---|"]
    for interval, figures in report["kill_to_report"].items():
        for name, values in figures.items():
            lines.append(
                f"| kill -> {name} ({interval} monitors) | {values['median'] * 1000:.1f} ms "
                f"| {values['p95'] * 1000:.1f} ms |"
            )
    cpu = report["cpu_per_monitor"]
    for mode in ("active", "passive"):
        figures = cpu[mode]
        lines.append(
            f"| CPU per Dummy monitor, {mode}: machine / guest / dped "
            f"| {figures['machine_ms']} / {figures['guest_ms']} / {figures['dped_ms']} ms "
            f"| ({figures['monitors']} monitors) |"
        )
    lines.append(
        f"| of which the agent itself (active) | {cpu['active']['agent_itself_ms']} ms | |"
    )
    lines.append(f"| machine CPU per monitor, active / passive | {cpu['ratio']:.0%} | |")
    idle = report["idle_percent_of_a_core"]
    lines.append(
        f"| idle (3 x 2 Dummy, 10 s), % of a core: active / passive "
        f"| {idle['active']} / {idle['passive']} | |"
    )
    dped = report["idle_dped_percent_of_a_core"]
    lines.append(
        f"| idle dped (cped's, same deployable), % of a core: active / passive "
        f"| {dped['active']} / {dped['passive']} | |"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, help="write the figures there too")
    args = parser.parse_args()
    report = asyncio.run(run(args.quick))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(table(report))


if __name__ == "__main__":
    main()
