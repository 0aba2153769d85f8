"""A systemd unit's main process killed inside a VM: when the guest agent says so.

Boots one assembly's VM with the libvirt driver (a JEOS, which runs systemd),
installs a unit whose main process is ``/bin/sleep infinity``, and drives it
the way dped does in active mode: the guest agent starts it, schedules its
monitor (every ``--interval`` seconds) with a watch on the unit's main
process, and reports changes.  Then, ``--kills`` times, at a random moment of
the monitor's cycle: the unit's main process gets SIGKILL from a shell kept
open inside the VM (the host writes the pid to it: the time starts at that
write, so one SSH packet's way in is counted), and the times are taken to

- ``died``: the agent's report that the watched process is gone;
- ``failed``: the monitor's non-zero result that confirms it (what dped counts
  as the resource's failure);
- ``running``: stop and start through the agent returned (dped's restart).

    .venv/bin/python -m bench.agent_systemd --jeos-dir DIR [--jeos base]
        [--kills 10] [--interval 60] [--out FILE]

from the repository root, as root, with libvirtd answering (``.ci/libvirt-up``)
and a built JEOS in ``DIR/<jeos>/`` (``images.jeos.build_jeos``).  The result
goes to ``bench/results/agent_systemd.json``.  Under software emulation (TCG)
every process the guest starts is slow; the figures say so.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.agent import failed, next_of, succeeded
from bench.common import add_jeos_arguments, stats, write_report
from bench.recovery_libvirt import URI, _make_assembly
from dpe import agent_ops
from dpe.agent_channel import AgentChannel, ProcessDied, start_agent
from dpe.drivers.libvirt import LibvirtDriver
from dpe.interfaces import Connection
from dpe.transport import SshTransport
from foundation.kvm import kvm_usable
from foundation.model import Resource
from foundation.paths import Paths

UNIT = "pcloud-bench-sleep"
SERVICE = Resource(name="svc", rclass="systemd", type=UNIT, provider="")
# No start limit: the benchmark restarts the unit every few seconds, and systemd's
# default (5 starts in 10 s) would refuse the sixth start, as it would any unit's.
INSTALL = (
    f"printf '[Unit]\\nStartLimitIntervalSec=0\\n[Service]\\nExecStart=/bin/sleep infinity\\n'"
    f" > /etc/systemd/system/{UNIT}.service"
    " && systemctl daemon-reload"
)
KILLER = "while read pid; do kill -9 $pid; done"  # kept open: the kill is one packet away
TIMEOUT = 120.0


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="pc-bench-", dir="/tmp"))
    paths = Paths(home / "etc", home, home / "run")
    paths.ensure()
    try:
        assembly, made = _make_assembly(paths, args)
        settings = {"uri": URI, "images": str(paths.images_dir / "assemblies")}
        driver = LibvirtDriver(paths, settings | {"jeos_images": str(args.jeos_dir)})
        try:
            booting = time.monotonic()
            instance = await driver.create("bench", assembly, made)
            print(f"VM up in {time.monotonic() - booting:.0f} s", flush=True)
            connection = await SshTransport().connect(instance, made, 60.0)
            try:
                return await _kills(connection, args)
            finally:
                await connection.close()
        finally:
            for instance in await driver.list("bench"):
                await driver.destroy(instance.instance_id)
            await driver.close()
    finally:
        shutil.rmtree(home, ignore_errors=True)


async def _kills(connection: Connection, args: argparse.Namespace) -> dict[str, Any]:
    installed = await connection.run(INSTALL, TIMEOUT)
    if installed.exit_status != 0:
        raise RuntimeError(f"installing the unit failed: {installed.stderr}")
    agent = await start_agent(connection, label="vm")
    killer = await connection.open_channel(KILLER, TIMEOUT)
    times: dict[str, list[float]] = {"died": [], "failed": [], "running": []}
    try:
        await _must_succeed(agent, "start")
        events = agent.events()
        key = agent_ops.monitor_key(SERVICE.name, args.interval)
        await _schedule(agent, key, args.interval)
        await next_of(events, succeeded)
        for kill in range(args.kills):
            pid = await _main_pid(connection)
            await asyncio.sleep(random.uniform(0.5, 2.0))  # anywhere in the monitor's cycle
            killed = time.perf_counter()
            await killer.write(f"{pid}\n".encode())
            _, died = await next_of(events, lambda e: isinstance(e, ProcessDied))
            _, confirmed = await next_of(events, failed)
            await _must_succeed(agent, "stop")
            await _must_succeed(agent, "start")
            running = time.perf_counter()
            await _schedule(agent, key, args.interval)
            await next_of(events, succeeded)
            for name, when in zip(times, (died, confirmed, running), strict=True):
                times[name].append(when - killed)
            print(
                f"kill {kill + 1}: "
                + ", ".join(f"{k} {v[-1] * 1000:.0f} ms" for k, v in times.items()),
                flush=True,
            )
    finally:
        killer.write_eof()
        await agent.close()
    return {name: stats(values) for name, values in times.items()}


async def _must_succeed(agent: AgentChannel, op: str) -> None:
    result = await agent.run(agent_ops.op_message(SERVICE, op))
    if result.exit_status != 0:
        raise RuntimeError(f"{op} of {UNIT} failed: {result}")


async def _schedule(agent: AgentChannel, key: str, interval: float) -> None:
    op = agent_ops.op_message(SERVICE, "monitor", interval=interval)
    await agent.schedule(key, op, interval, agent_ops.watch_message(SERVICE))


async def _main_pid(connection: Connection) -> int:
    shown = await connection.run(f"systemctl show --property=MainPID --value {UNIT}", TIMEOUT)
    pid = int(shown.stdout.strip() or 0)
    if pid <= 0:
        raise RuntimeError(f"{UNIT} has no main process: {shown.stdout!r} {shown.stderr!r}")
    return pid


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_jeos_arguments(parser)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--interval", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=Path("bench/results/agent_systemd.json"))
    return parser.parse_args()


def main() -> int:
    args = _arguments()
    figures = asyncio.run(main_async(args))
    report = {
        "what": "a systemd unit's main process killed inside a VM: agent's report, failure,"
        " running again",
        "domain_type": "kvm" if kvm_usable() else "qemu (TCG)",
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores",
        "load_average": [round(x, 1) for x in os.getloadavg()],
        "monitor_interval_s": args.interval,
        "kills": args.kills,
        "seconds": figures,
        "target": "kill -> failed: median <= 150 ms",
    }
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
