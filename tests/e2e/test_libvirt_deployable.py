"""A deployable of real VMs on libvirt (TCG when KVM is not usable), run by ``dped``.

One deployable for the whole module, its scenarios in sequence (each VM boots
in 20-50 s under emulation): ``web`` runs ``ocf:heartbeat:Dummy`` and the
``systemd-journald`` unit (``systemd`` class), ``db`` runs
Dummy and ``ocf:heartbeat:anything``, monitored actively (the guest agent runs
in each VM on the JEOS's python3).  Start, all running, a guest agent in each
VM; a resource killed inside a VM is restarted; the guest agent killed inside
a VM is started again; ``dped`` killed and started again adopts the VMs (no
new domain); ``virsh destroy`` of a VM: a new VM is booted and its resources
started; stopping leaves no domain, overlay or qemu process.

Needs root, the session JEOS (``conftest.jeos_record``), libguestfs and a
libvirtd answering on ``qemu:///system`` (``.ci/libvirt-up`` starts one).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dpe.drivers.libvirt import LibvirtDriver
from foundation.model import parse
from foundation.paths import Paths
from images import customize, jeos, keys
from tests.conftest import make_home
from tests.e2e.conftest import require_guestfs, require_vm_tools

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2000)]

URI = "qemu:///system"
BOOT_WAIT = 900.0  # two VMs booting at once under TCG, other tests running
START_TIMEOUT = "600s"  # the driver's wait for a booting VM's sshd, on a busy host
ASSEMBLIES = ("web", "db")


def virsh(*args: str) -> str:
    done = subprocess.run(
        ["virsh", "-c", URI, *args], capture_output=True, text=True, timeout=60, check=False
    )
    return done.stdout


def our_domains() -> set[str]:
    return {n for n in virsh("list", "--all", "--name").split() if n.startswith("pc-shop-")}


def require_libvirt() -> None:
    pytest.importorskip("libvirt")
    if shutil.which("virsh") is None:
        pytest.skip("virsh is missing (Debian libvirt-clients)")
    done = subprocess.run(["virsh", "-c", URI, "version"], capture_output=True, timeout=30)
    if done.returncode != 0:
        pytest.skip(f"libvirtd does not answer on {URI} (run .ci/libvirt-up)")


def document(paths: Paths, jeos_dir: Path, uuids: dict[str, str]) -> dict[str, Any]:
    def dummy(name: str) -> dict[str, Any]:
        return {"name": name, "type": "Dummy", "monitor_interval": 2}

    app = {
        "name": "app",
        "type": "anything",
        "monitor_interval": 2,
        "timeouts": {"monitor": "10s", "start": "20s", "stop": "20s"},
        "parameters": {"binfile": "/bin/sleep", "cmdline_options": "86401"},
    }
    # a unit every systemd guest runs: its monitor and its main pid are asked of
    # systemd itself by the guest agent (root: systemd's private socket)
    journal = {
        "name": "journal",
        "class": "systemd",
        "type": "systemd-journald",
        "monitor_interval": 2,
    }
    return {
        "name": "shop",
        "infrastructure": "libvirt",
        "settings": {
            "uri": URI,
            "images": str(paths.images_dir / "assemblies"),
            "jeos_images": str(jeos_dir),
            "start_timeout": START_TIMEOUT,
        },
        "heartbeat": {"interval": 1, "timeout": 8, "health_interval": 10},
        "monitoring": "active",
        "assemblies": [
            {
                "name": "web",
                "uuid": uuids["web"],
                "image": "base",
                "resources": [dummy("d1"), journal],
            },
            {"name": "db", "uuid": uuids["db"], "image": "base", "resources": [dummy("d2"), app]},
        ],
    }


@dataclass
class Dped:
    paths: Paths
    doc: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    offset: int = 0  # where the current scenario starts in the log

    def start(self) -> None:
        argv = [sys.executable, "-m", "dpe.main", "--document", str(self.doc)]
        argv += ["--state-dir", str(self.paths.state_dir), "-v"]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=out, stdin=subprocess.DEVNULL)

    def text(self) -> str:
        return self.log.read_text(errors="replace")[self.offset :]

    def mark(self) -> None:
        self.offset = len(self.log.read_text(errors="replace"))

    def stop(self, signum: int = signal.SIGTERM, within: float = 180.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        return self.proc.wait(within)


@dataclass
class World:
    paths: Paths
    dped: Dped
    keys: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)


def wait_for(condition: Callable[[], Any], within: float, what: str, world: World) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {within:.0f} s\n{world.dped.text()[-4000:]}")


@pytest.fixture(scope="module")
def world(jeos_record: jeos.JeosRecord) -> Iterator[World]:
    require_vm_tools()
    require_guestfs()
    require_libvirt()
    home = make_home()
    paths = Paths(home / "etc", home, home / "run")
    paths.ensure()
    made = {name: keys.write_assembly_keys(paths.keys_dir, name) for name in ASSEMBLIES}
    uuids = {name: str(uuid.uuid4()) for name in ASSEMBLIES}
    for name in ASSEMBLIES:
        customize.create_assembly_image(
            jeos_record, name, uuids[name], made[name], paths.images_dir / "assemblies"
        )
    doc = home / "shop.json"
    parse(document(paths, jeos_record.path.parent.parent, uuids))  # valid before use
    doc.write_text(json.dumps(document(paths, jeos_record.path.parent.parent, uuids)))
    dped = Dped(paths, doc, home / "dped.log")
    try:
        yield World(paths, dped, made)
    finally:
        if dped.proc is not None and dped.proc.poll() is None:
            dped.proc.kill()
            dped.proc.wait(30)
        for name in our_domains():  # whatever a failed scenario left
            virsh("destroy", name)
            virsh("undefine", name)
        shutil.rmtree(home, ignore_errors=True)


def instances(world: World) -> dict[str, str]:
    settings = {"uri": URI, "images": "/nonexistent", "jeos_images": "/nonexistent"}
    driver = LibvirtDriver(world.paths, settings)

    async def listed() -> dict[str, Any]:
        try:
            return {i.assembly: i for i in await driver.list("shop")}
        finally:
            await driver.close()

    return asyncio.run(listed())


def ssh(world: World, assembly: str, command: str) -> subprocess.CompletedProcess[str]:
    instance = instances(world)[assembly]
    known = world.paths.state_dir / f"known_hosts.{assembly}"
    known.write_text(
        f"[{instance.ssh_host}]:{instance.ssh_port} {world.keys[assembly].host_public_key}\n"
    )
    argv = ["ssh", "-i", str(world.keys[assembly].private_key), "-p", str(instance.ssh_port)]
    argv += ["-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes"]
    argv += ["-o", "BatchMode=yes", f"root@{instance.ssh_host}", command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def test_start_all_running(world: World) -> None:
    started = time.monotonic()
    world.dped.start()
    wait_for(lambda: "shop running:" in world.dped.text(), BOOT_WAIT, "shop running", world)
    world.timings["start"] = time.monotonic() - started
    listed = instances(world)
    assert sorted(listed) == ["db", "web"]
    assert our_domains() == {i.instance_id for i in listed.values()}
    assert "sleep 86401" in ssh(world, "db", "ps -eo args").stdout
    for assembly in ASSEMBLIES:
        assert guest_agents(world, assembly), f"no guest agent in {assembly}"
    assert "shop/web/journal running:" in world.dped.text()
    assert "monitoring passively" not in world.dped.text()


def guest_agents(world: World, assembly: str) -> list[str]:
    """The guest agent processes running in the assembly's VM: "PID ARGS" each (a new
    agent has the same command line as the one it replaced)."""
    listed = ssh(world, assembly, "ps -eo pid=,args=").stdout.splitlines()
    return [line for line in listed if "--heartbeat" in line and "/agent-" in line]


def test_a_resource_killed_inside_a_vm_is_restarted(world: World) -> None:
    world.dped.mark()
    killed_at = time.monotonic()
    killed = ssh(world, "db", "pkill -KILL -f 'slee[p] 86401'")
    assert killed.returncode == 0, killed.stderr
    wait_for(lambda: "shop/db/app failed:" in world.dped.text(), 60, "app failure seen", world)
    world.timings["watched_kill_seen"] = time.monotonic() - killed_at  # ssh's own time included
    wait_for(
        lambda: "shop/db/app running: started" in world.dped.text(), 90, "app restarted", world
    )
    assert "sleep 86401" in ssh(world, "db", "ps -eo args").stdout


def test_a_guest_agent_killed_inside_a_vm_is_started_again(world: World) -> None:
    old = guest_agents(world, "web")
    world.dped.mark()
    killed = ssh(world, "web", "pkill -KILL -f 'agent-.*--heartbea[t]'")
    assert killed.returncode == 0, killed.stderr
    wait_for(
        lambda: "shop/web running: guest agent started again" in world.dped.text(),
        60,
        "guest agent started again",
        world,
    )
    new = guest_agents(world, "web")
    assert len(new) == 1 and new != old, (old, new)
    assert "shop/web failed:" not in world.dped.text()
    assert "shop/web/d1 failed:" not in world.dped.text()


def test_a_restarted_dped_adopts_the_running_vms(world: World) -> None:
    before = our_domains()
    assert world.dped.stop(signal.SIGKILL) == -signal.SIGKILL
    world.dped.mark()
    world.dped.start()
    wait_for(lambda: "shop running:" in world.dped.text(), 120, "running after restart", world)
    text = world.dped.text()
    assert "adopting instance" in text
    assert "creating" not in text
    assert our_domains() == before


def test_a_destroyed_vm_is_replaced(world: World) -> None:
    old = instances(world)["web"].instance_id
    world.dped.mark()
    killed_at = time.monotonic()
    virsh("destroy", old)
    wait_for(lambda: "shop/web failed:" in world.dped.text(), 60, "web failure seen", world)
    world.timings["detect"] = time.monotonic() - killed_at
    wait_for(
        lambda: "shop/web/d1 running: started" in world.dped.text(), BOOT_WAIT, "d1 again", world
    )
    world.timings["recover"] = time.monotonic() - killed_at
    new = instances(world)["web"].instance_id
    assert new != old
    assert old not in our_domains()
    assert new in our_domains()
    print(f"\nlibvirt e2e timings: {world.timings}")


def test_stop_leaves_nothing(world: World) -> None:
    assert world.dped.stop() == 0, world.dped.text()[-4000:]
    assert "shop stopped:" in world.dped.text()
    assert our_domains() == set()
    assert list((world.paths.state_dir / "vms").glob("*/*")) == []
    qemus = subprocess.run(["pgrep", "-f", "guest=pc-shop-"], capture_output=True, check=False)
    assert qemus.stdout == b""
