"""A deployable of real nova servers on the all-in-one OpenStack (``tools/openstack-aio``).

Everything goes through cped and pcloudsh as an operator would: the settings
are checked against the cloud when written (an unknown flavor or network is
exit 2, nothing stored), the assemblies are the project's own images (the
session JEOS customized per assembly) uploaded to glance once per content, and
every server boots with a config drive carrying its hostname, root's key and
the host key the engine pins (``pcloud-firstboot`` says what it applied).

Two assemblies, each with a resource, ``db/app`` ordered before ``web/www``.
In ``make test-openstack`` (short, real): start, a server deleted from outside is seen
(the path and the time are printed) and replaced with its resources running
again, stop leaves no server or port of ours, and ``deployable_delete --purge``
removes the images uploaded.  With ``PCLOUD_E2E_OPENSTACK_LONG=1``
also: a resource killed inside a server is restarted, nova-api stopped for
60 s fences nothing (an event says the API does not answer) and recovery goes
on after it (a server stopped from outside is replaced), and cped and dped
killed and started again adopt the servers.

Needs root, the rig (skips, saying why, only when not root or it cannot
start), the session JEOS and libguestfs.
"""

from __future__ import annotations

import json
import os
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

from cpe.client import Client
from dpe.drivers.openstack import host_key_type
from foundation.keyfiles import AssemblyKeys, load_assembly_keys
from foundation.paths import Paths, resolve
from images import customize, jeos, keys
from tests.conftest import make_home
from tests.e2e.conftest import Rig, require_guestfs, require_vm_tools
from tests.integration.conftest import CpedProcess

openstack = pytest.importorskip("openstack")

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3600)]

LONG = os.environ.get("PCLOUD_E2E_OPENSTACK_LONG") == "1"
ASSEMBLIES = ("web", "db")
FLAVOR = "pcloud-e2e"  # the rig's flavors have smaller disks than the session JEOS's 4 GB
# A JEOS boots under TCG in 1-2 min on an idle host; at a load of 15 on 2 cores its
# systemd took over 280 s (the driver's default start_timeout) to start sshd.
START_TIMEOUT = "600s"
BOOT_WAIT = 1500.0  # first start: flatten and upload two disks, boot two servers under TCG
REPLACE_WAIT = 900.0
OUTAGE = 60.0


@dataclass
class World:
    rig: Rig
    paths: Paths
    cped: CpedProcess
    keys: dict[str, Any]  # as written for the assembly images; cped's import writes its own
    conn: Any  # an openstacksdk connection of the test's own: "from outside"
    settings: dict[str, str]
    document: dict[str, Any]
    timings: dict[str, Any] = field(default_factory=dict)
    mark: int = 0  # events after this id belong to the current scenario

    @property
    def client(self) -> Client:
        return self.cped.client

    def pcloudsh(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = os.environ | {"PCLOUD_HOME": str(self.paths.state_dir.parent)}
        argv = [str(Path(sys.executable).parent / "pcloudsh"), *args]
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)

    def events(self) -> list[dict[str, Any]]:
        return self.client.query_events(deployable="shop", after_id=self.mark, limit=1000)

    def new_scenario(self) -> None:
        newest = self.client.query_events(deployable="shop", order="desc", limit=1)
        self.mark = int(newest[0]["id"]) if newest else 0

    def wait(self, predicate: Callable[[dict[str, Any]], bool], within: float, what: str) -> Any:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for event in self.events():
                if predicate(event):
                    return event
            time.sleep(0.5)
        tail = "\n".join(_line(e) for e in self.events()[-40:])
        raise AssertionError(f"{what}: not within {within:.0f} s; events:\n{tail}\n{self.log()}")

    def log(self, whole: bool = False) -> str:
        path = self.paths.log_dir / "dped-shop.log"
        text = path.read_text(errors="replace") if path.exists() else "(no dped log)"
        return text if whole else text[-4000:]

    def path_of(self, server_id: str, reason: str) -> str:
        """Which path saw the server die first: nova's notification, the list, the heartbeat."""
        if "openstack event" not in reason:
            return "heartbeat" if "heartbeat" in reason or "connection" in reason else reason
        for line in self.log(whole=True).splitlines():
            if f"server {server_id} " in line and "(instance." in line:
                return "notification " + line.rsplit("(", 1)[1].rstrip(")")
            if f"server {server_id} " in line and "(servers list)" in line:
                return "servers list"
        return "openstack event"

    def servers(self) -> dict[str, Any]:
        """Our servers by assembly, as the cloud lists them."""
        found = {}
        for server in self.conn.compute.servers(details=True, name="^pc-shop-"):
            if (server.metadata or {}).get("pcloud_owner") == "pacemaker-cloud":
                found[server.metadata["pcloud_assembly"]] = server
        return found

    def address(self, server: Any) -> str:
        return str(server.addresses[self.rig.network][0]["addr"])

    def pinned(self, assembly: str) -> AssemblyKeys:
        """The keys cped holds for the assembly: the config drive's, the ones the engine pins."""
        return load_assembly_keys(self.paths.keys_dir, assembly)

    def ssh(
        self, assembly: str, command: str, address: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``command`` as root on the assembly's server (found through the API unless given)."""
        address = address or self.address(self.servers()[assembly])
        known = self.paths.state_dir / f"known_hosts.{assembly}"
        pinned = self.pinned(assembly)
        known.write_text(f"{address} {pinned.host_public_key}\n")
        argv = ["ssh", "-i", str(pinned.private_key)]
        argv += ["-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes"]
        argv += ["-o", "BatchMode=yes", "-o", "ConnectTimeout=20", f"root@{address}", command]
        return subprocess.run(argv, capture_output=True, text=True, timeout=90, check=False)


def _line(event: dict[str, Any]) -> str:
    subject = "/".join(
        p for p in (event["deployable"], event.get("assembly"), event.get("resource")) if p
    )
    return f"{event['id']} {subject} {event['state']}: {event['reason']}"


def running(subject: str) -> Callable[[dict[str, Any]], bool]:
    _, _, rest = subject.partition("/")
    assembly, _, resource = rest.partition("/")

    def check(event: dict[str, Any]) -> bool:
        return (
            event["state"] == "running"
            and (event.get("assembly") or "") == assembly
            and (event.get("resource") or "") == resource
        )

    return check


def failed(assembly: str) -> Callable[[dict[str, Any]], bool]:
    return lambda e: (
        e.get("assembly") == assembly and not e.get("resource") and e["state"] == "failed"
    )


def document(world_paths: Paths, rig: Rig, jeos_dir: Path, uuids: dict[str, str]) -> dict[str, Any]:
    app = {
        "name": "app",
        "type": "anything",
        "monitor_interval": 5,
        "timeouts": {"monitor": "20s", "start": "30s", "stop": "30s"},
        "parameters": {"binfile": "/bin/sleep", "cmdline_options": "86401"},
    }
    www = {"name": "www", "type": "Dummy", "monitor_interval": 5}
    return {
        "name": "shop",
        "infrastructure": "openstack",
        "settings": settings(rig, world_paths, jeos_dir),
        "assemblies": [
            {"name": "web", "uuid": uuids["web"], "image": "base", "resources": [www]},
            {"name": "db", "uuid": uuids["db"], "image": "base", "resources": [app]},
        ],
        "constraints": [{"first": "db/app", "then": "web/www"}],
    }


def settings(rig: Rig, paths: Paths, jeos_dir: Path) -> dict[str, str]:
    return {
        "cloud": rig.cloud,
        "clouds_file": str(rig.clouds_yaml),
        "flavor": FLAVOR,
        "network": rig.network,
        "security_group": rig.security_group,
        "notifications": str(rig.rabbitmq),
        "images": str(paths.images_dir / "assemblies"),
        "jeos_images": str(jeos_dir),
        "start_timeout": START_TIMEOUT,
    }


@pytest.fixture(scope="module")
def world(openstack_rig: Rig, jeos_record: jeos.JeosRecord) -> Iterator[World]:
    require_vm_tools()
    require_guestfs()
    home = make_home()
    try:
        yield from _world(openstack_rig, jeos_record, home)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _world(openstack_rig: Rig, jeos_record: jeos.JeosRecord, home: Path) -> Iterator[World]:
    paths = resolve({"PCLOUD_HOME": str(home)})
    paths.ensure()
    made = {name: keys.write_assembly_keys(paths.keys_dir, name) for name in ASSEMBLIES}
    uuids = {name: str(uuid.uuid4()) for name in ASSEMBLIES}
    for name in ASSEMBLIES:
        began = time.monotonic()
        customize.create_assembly_image(
            jeos_record, name, uuids[name], made[name], paths.images_dir / "assemblies"
        )
        print(f"\nassembly image {name}: {time.monotonic() - began:.0f} s")
    config = openstack.config.OpenStackConfig(
        config_files=[str(openstack_rig.clouds_yaml)], load_envvars=False
    )
    conn = openstack.connection.Connection(
        config=config.get_one(cloud=openstack_rig.cloud, api_timeout=60)
    )
    made_flavor = _ensure_flavor(conn)
    cped = CpedProcess(paths).start()
    jeos_dir = jeos_record.path.parent.parent
    world = World(
        openstack_rig,
        paths,
        cped,
        made,
        conn,
        settings(openstack_rig, paths, jeos_dir),
        document(paths, openstack_rig, jeos_dir, uuids),
    )
    try:
        cped.client.create_jeos({"name": "base", "kind": "image", "path": str(jeos_record.path)})
        yield world
    finally:
        _clean_up(world)
        if made_flavor:
            conn.compute.delete_flavor(made_flavor, ignore_missing=True)
        print(f"\nopenstack e2e timings: {json.dumps(world.timings)}")


def _ensure_flavor(conn: Any) -> str | None:
    """A flavor whose disk holds the JEOS (the rig's cloud is an admin's); the id if made."""
    if any(f.name == FLAVOR for f in conn.compute.flavors()):
        return None
    return str(conn.compute.create_flavor(name=FLAVOR, ram=512, vcpus=1, disk=5).id)


def _clean_up(world: World) -> None:
    """Whatever a failed scenario left: dped by cped's stop, then our servers."""
    try:
        world.client.stop_deployable("shop", wait=120, kill_after=60)
    except Exception as error:  # noqa: BLE001 - whatever went wrong, the servers go too
        print(f"stopping shop at the end: {error}")
    world.cped.close()
    for server in world.servers().values():
        world.conn.compute.delete_server(server.id, ignore_missing=True)


# ---------------------------------------------------------------------------


def test_settings_the_cloud_does_not_have_are_refused(world: World) -> None:
    base = [f"--set={k}={v}" for k, v in world.settings.items() if k not in ("flavor", "network")]
    done = world.pcloudsh(
        "deployable_create", "shop", "openstack", *base, "--set=flavor=pcloud.huge",
        "--set=network=nowhere",
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "pcloud.huge" in done.stderr and "nowhere" in done.stderr
    assert world.client.list_deployables() == []
    good = [f"--set={k}={v}" for k, v in world.settings.items()]
    done = world.pcloudsh("deployable_create", "shop", "openstack", *good)
    assert done.returncode == 0, done.stdout + done.stderr


def test_start_two_assemblies_on_nova(world: World) -> None:
    path = world.paths.state_dir / "shop.json"
    uuid_of_created = world.client.get_deployable("shop")["uuid"]  # the one just created
    path.write_text(json.dumps(world.document | {"uuid": uuid_of_created}))
    done = world.pcloudsh("deployable_import", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    world.new_scenario()
    started = time.monotonic()
    done = world.pcloudsh("deployable_start", "shop")
    assert done.returncode == 0, done.stdout + done.stderr
    world.wait(running("shop"), BOOT_WAIT, "shop running")
    world.timings["start"] = round(time.monotonic() - started, 1)
    servers = world.servers()
    assert sorted(servers) == ["db", "web"]
    assert all(s.status == "ACTIVE" for s in servers.values())
    images = [i.name for i in world.conn.image.images() if i.name.startswith("pcloud-")]
    assert sum(n.startswith("pcloud-kernel-") for n in images) == 1  # shared by both
    assert sum(n.startswith("pcloud-ramdisk-") for n in images) == 1
    for assembly in ASSEMBLIES:
        firstboot = world.ssh(assembly, "cat /run/pcloud-firstboot; hostname")
        assert firstboot.returncode == 0, firstboot.stderr
        report = json.loads(firstboot.stdout.splitlines()[0])
        kind = host_key_type(world.pinned(assembly).host_public_key)  # ECDSA keys by default
        assert report["host_key"] == kind and report["authorized_keys"] == 1, report
        assert report["config_drive"], report
        assert firstboot.stdout.splitlines()[1] == assembly
    assert "sleep 86401" in world.ssh("db", "ps -eo args").stdout
    order = [e for e in world.events() if e.get("resource") and e["state"] == "running"]
    assert [e["resource"] for e in order][:2] == ["app", "www"]  # db/app before web/www


def test_a_resource_killed_inside_a_server_is_restarted(world: World) -> None:
    if not LONG:
        pytest.skip("long scenario: set PCLOUD_E2E_OPENSTACK_LONG=1")
    world.new_scenario()
    killed = world.ssh("db", "pkill -KILL -f 'slee[p] 86401'")
    assert killed.returncode == 0, killed.stderr
    world.wait(lambda e: e.get("resource") == "app" and e["state"] == "failed", 120, "app failed")
    world.wait(running("shop/db/app"), 180, "app restarted")
    assert "sleep 86401" in world.ssh("db", "ps -eo args").stdout


def test_a_server_deleted_from_outside_is_replaced(world: World) -> None:
    old = world.servers()["web"]
    world.new_scenario()
    deleted_at = time.monotonic()
    world.conn.compute.delete_server(old.id)  # as `openstack server delete` does
    seen = world.wait(failed("web"), 120, "web failure seen")
    world.timings["delete_detected"] = round(time.monotonic() - deleted_at, 1)
    world.timings["delete_path"] = world.path_of(old.id, seen["reason"])
    world.wait(running("shop/web/www"), REPLACE_WAIT, "web/www running again")
    world.timings["delete_recovered"] = round(time.monotonic() - deleted_at, 1)
    new = world.servers()["web"]
    assert new.id != old.id
    assert old.id not in {s.id for s in world.conn.compute.servers()}
    print(f"\nserver delete: {seen['reason']}")


def test_the_api_away_for_a_minute_fences_nothing_and_recovery_goes_on(world: World) -> None:
    if not LONG:
        pytest.skip("long scenario: set PCLOUD_E2E_OPENSTACK_LONG=1")
    listed = world.servers()
    before = {a: s.id for a, s in listed.items()}
    db_address = world.address(listed["db"])  # the API cannot say while it is away
    world.new_scenario()
    pids = _nova_api_pids()
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        world.wait(
            lambda e: "does not answer" in e["reason"], OUTAGE + 60, "an event: API unreachable"
        )
        time.sleep(OUTAGE)
        killed = world.ssh("db", "pkill -KILL -f 'slee[p] 86401'", db_address)  # without the API
        assert killed.returncode == 0, killed.stderr
        world.wait(running("shop/db/app"), 180, "app restarted while the API is away")
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    world.wait(lambda e: "answers again" in e["reason"], 180, "an event: API back")
    fenced = [
        e for e in world.events() if e["state"] in ("fencing", "failed") and not e.get("resource")
    ]
    assert fenced == [], [_line(e) for e in fenced]
    assert {a: s.id for a, s in world.servers().items()} == before
    # and after it: a server stopped from outside is seen and replaced
    world.new_scenario()
    stopped_at = time.monotonic()
    world.conn.compute.stop_server(before["db"])  # as `openstack server stop` does
    seen = world.wait(failed("db"), 180, "db failure seen")
    world.timings["stop_detected"] = round(time.monotonic() - stopped_at, 1)
    world.timings["stop_path"] = world.path_of(before["db"], seen["reason"])
    world.wait(running("shop/db/app"), REPLACE_WAIT, "db/app running again")
    world.wait(running("shop/web/www"), REPLACE_WAIT, "web/www running again")
    world.timings["stop_recovered"] = round(time.monotonic() - stopped_at, 1)
    assert world.servers()["db"].id != before["db"]


def test_cped_and_dped_killed_adopt_the_servers(world: World) -> None:
    if not LONG:
        pytest.skip("long scenario: set PCLOUD_E2E_OPENSTACK_LONG=1")
    before = {a: s.id for a, s in world.servers().items()}
    dped = world.client.deployable_status("shop").get("dpe", {}).get("pid")
    world.cped.kill()
    if isinstance(dped, int):
        os.kill(dped, signal.SIGKILL)
    world.cped.start()
    world.new_scenario()
    world.wait(running("shop"), 300, "shop running after the restart")
    reasons = " ".join(e["reason"] for e in world.events())
    assert "adopting instance" in reasons
    assert "creating an instance" not in reasons
    assert {a: s.id for a, s in world.servers().items()} == before


def test_stop_leaves_no_server_port_or_volume_of_ours(world: World) -> None:
    world.new_scenario()
    done = world.pcloudsh("deployable_stop", "shop")
    assert done.returncode == 0, done.stdout + done.stderr
    world.wait(lambda e: not e.get("assembly") and e["state"] == "stopped", 300, "shop stopped")
    assert world.servers() == {}
    ports = [p for p in world.conn.network.ports() if str(p.device_owner).startswith("compute:")]
    assert ports == []
    volumes = list(world.conn.block_storage.volumes()) if _has_volumes(world) else []
    assert volumes == []


def test_delete_with_purge_removes_the_images_uploaded(world: World) -> None:
    assert any(i.name.startswith("pcloud-disk-") for i in world.conn.image.images())
    done = world.pcloudsh("--json", "deployable_delete", "shop", "--purge")
    assert done.returncode == 0, done.stdout + done.stderr
    purged = json.loads(done.stdout)["purged"]
    assert len(purged["images"]) == 4, purged  # two disks, one kernel, one initrd
    left = [i.name for i in world.conn.image.images() if i.name in purged["images"]]
    assert left == []


def _has_volumes(world: World) -> bool:
    try:
        return world.conn.has_service("block-storage")  # type: ignore[no-any-return]
    except Exception:  # noqa: BLE001 - a catalog that cannot say has no volumes to leave
        return False


def _nova_api_pids() -> list[int]:
    run_dir = Path(json.loads(subprocess.run(
        [str(Path(__file__).resolve().parents[2] / "tools/openstack-aio"), "status", "--json"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout)["run_dir"])  # fmt: skip
    parent = int(json.loads((run_dir / "pids.json").read_text())["nova-api"])
    children = subprocess.run(
        ["pgrep", "-P", str(parent)], capture_output=True, text=True, check=False
    ).stdout.split()
    return [parent, *map(int, children)]
