"""VM failure detection and recovery times with the libvirt driver.

Boots one assembly's VM with ``dpe.drivers.libvirt`` (direct kernel boot of a
JEOS, user-mode networking), connects with ``dpe.transport.SshTransport`` and
the pinned host key, then, several times: powers the VM off from outside
(``virsh destroy``, as an operator or a crash would) and measures

- detection by libvirt event: until the driver's ``watch`` callback fires;
- detection by heartbeat: until an SSH keepalive (every ``--heartbeat`` s)
  fails or is silent for ``--heartbeat-timeout`` s, as the engine's heartbeat;
- recovery: fence (``destroy``) + ``create`` of a new VM until its sshd
  answers, with the boot time (define to sshd banner) reported apart.

    .venv/bin/python bench/recovery_libvirt.py --jeos-dir DIR [--jeos base]
        [--runs 3] [--heartbeat 1 --heartbeat-timeout 8] [--out FILE]

from the repository root, as root, with libvirtd answering (``.ci/libvirt-up``)
and a built JEOS in ``DIR/<jeos>/`` (``images.jeos.build_jeos``).  The result
goes to ``bench/results/recovery_libvirt.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import add_jeos_arguments, write_report
from dpe.drivers.libvirt import LibvirtDriver
from dpe.interfaces import Instance, InstanceState
from dpe.transport import SshTransport
from foundation.errors import PcloudError
from foundation.keyfiles import AssemblyKeys
from foundation.kvm import kvm_usable
from foundation.model import Assembly
from foundation.paths import Paths
from images import customize, jeos, keys

URI = "qemu:///system"


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="pc-bench-", dir="/tmp"))
    paths = Paths(home / "etc", home, home / "run")
    paths.ensure()
    try:
        assembly, assembly_keys = _make_assembly(paths, args)
        settings = {"uri": URI, "images": str(paths.images_dir / "assemblies")}
        driver = LibvirtDriver(paths, settings | {"jeos_images": str(args.jeos_dir)})
        try:
            return await _runs(driver, assembly, assembly_keys, args)
        finally:
            for instance in await driver.list("bench"):
                await driver.destroy(instance.instance_id)
            await driver.close()
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _make_assembly(paths: Paths, args: argparse.Namespace) -> tuple[Assembly, AssemblyKeys]:
    record = jeos.load_jeos(args.jeos_dir, args.jeos)
    made = keys.write_assembly_keys(paths.keys_dir, "vm")
    assembly_uuid = str(uuid.uuid4())
    out = paths.images_dir / "assemblies"
    customize.create_assembly_image(record, "vm", assembly_uuid, made, out)
    return Assembly(name="vm", uuid=assembly_uuid, image=args.jeos), made


async def _runs(
    driver: LibvirtDriver, assembly: Assembly, made: AssemblyKeys, args: argparse.Namespace
) -> dict[str, Any]:
    events: asyncio.Queue[tuple[str, InstanceState, float]] = asyncio.Queue()
    watch = await driver.watch(lambda i, s: events.put_nowait((i, s, time.monotonic())))
    results: dict[str, list[float]] = {"boot": [], "event": [], "heartbeat": [], "recovery": []}
    started = time.monotonic()
    instance = await driver.create("bench", assembly, made)
    results["boot"].append(time.monotonic() - started)
    for run in range(args.runs):
        instance = await _one_run(driver, assembly, made, instance, events, results, args)
        print(f"run {run + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in results.items()))
    watch.close()
    return {k: _stats(v) for k, v in results.items()}


async def _one_run(
    driver: LibvirtDriver,
    assembly: Assembly,
    made: AssemblyKeys,
    instance: Instance,
    events: asyncio.Queue[tuple[str, InstanceState, float]],
    results: dict[str, list[float]],
    args: argparse.Namespace,
) -> Instance:
    connection = await SshTransport().connect(instance, made, 30.0)
    heartbeat = asyncio.create_task(_heartbeat(connection, args))
    await asyncio.sleep(args.heartbeat * 2)  # steady state
    killed = time.monotonic()
    subprocess.run(["virsh", "-c", URI, "destroy", instance.instance_id], check=True, timeout=60)
    while True:
        instance_id, _state, seen = await asyncio.wait_for(events.get(), 60)
        if instance_id == instance.instance_id:
            break
    results["event"].append(seen - killed)
    results["heartbeat"].append(await heartbeat - killed)
    await connection.close()
    await driver.destroy(instance.instance_id)
    booting = time.monotonic()
    replacement = await driver.create("bench", assembly, made)
    results["boot"].append(time.monotonic() - booting)
    results["recovery"].append(time.monotonic() - killed)
    return replacement


async def _heartbeat(connection: Any, args: argparse.Namespace) -> float:
    """When the engine's heartbeat would declare the instance lost."""
    last = time.monotonic()
    while True:
        await asyncio.sleep(args.heartbeat)
        remaining = max(0.1, args.heartbeat_timeout - (time.monotonic() - last))
        try:
            await connection.keepalive(remaining)
            last = time.monotonic()
        except PcloudError:
            return time.monotonic()
        if time.monotonic() - last >= args.heartbeat_timeout:
            return time.monotonic()


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_jeos_arguments(parser)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--heartbeat", type=float, default=1.0)
    parser.add_argument("--heartbeat-timeout", type=float, default=8.0)
    parser.add_argument("--out", type=Path, default=Path("bench/results/recovery_libvirt.json"))
    return parser.parse_args()


def main() -> int:
    args = _arguments()
    figures = asyncio.run(main_async(args))
    report = {
        "driver": "libvirt",
        "domain_type": "kvm" if kvm_usable() else "qemu (TCG)",
        "host": platform.node(),
        "heartbeat": {"interval": args.heartbeat, "timeout": args.heartbeat_timeout},
        "seconds": figures,
        "note": "event/heartbeat: from virsh destroy to detection; recovery: from virsh "
        "destroy to the new VM's sshd answering (fence + define + boot); boot: define "
        "to sshd banner",
    }
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
