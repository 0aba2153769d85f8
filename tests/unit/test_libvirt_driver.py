"""libvirt driver against libvirt's own test driver (``test:///default``): a real
libvirt API with no daemon.  The host side (overlay, SSH banner, ports, KVM) is
a hand-written fake, so nothing here starts a process or opens a socket."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

libvirt = pytest.importorskip("libvirt")

from dpe.drivers._libvirt_settings import LibvirtSettings  # noqa: E402
from dpe.drivers._libvirt_xml import (  # noqa: E402
    METADATA_NS,
    QEMU_NS,
    DomainSpec,
    InstanceMeta,
    domain_xml,
)
from dpe.drivers.libvirt import LibvirtDriver  # noqa: E402
from dpe.drivers.registry import make_driver  # noqa: E402
from dpe.interfaces import InstanceState, InstanceWatcher  # noqa: E402
from foundation.errors import InvalidInput, NotFound, OperationTimeout, Unavailable  # noqa: E402
from foundation.keyfiles import AssemblyKeys  # noqa: E402
from foundation.model import Assembly  # noqa: E402
from foundation.paths import Paths  # noqa: E402

URI = "test:///default"
UUID = "5b3f0d4c-1f59-4a55-9d0a-4f5d8a1b2c3d"
KEYS = AssemblyKeys(Path("/nonexistent/key"), "ssh-rsa AAAA k", Path("/nonexistent/h"), "ssh-rsa B")


class FakeHost:
    """Overlays are empty files; sshd answers when ``answering``; ports count up."""

    def __init__(self) -> None:
        self.answering = True
        self.kvm = False
        self.next_port = 42000
        self.overlays: list[tuple[Path, Path]] = []
        self.on_probe: Any = None

    async def create_overlay(self, backing: Path, dest: Path) -> None:
        self.overlays.append((backing, dest))
        dest.write_bytes(b"overlay of " + bytes(backing))

    async def answers_ssh(self, host: str, port: int) -> bool:
        if self.on_probe is not None:
            self.on_probe()
        return self.answering

    def free_port(self) -> int:
        self.next_port += 1
        return self.next_port

    def kvm_usable(self) -> bool:
        return self.kvm


@pytest.fixture
def images(pcloud_home: Paths) -> Path:
    """An assembly disk for ``web`` and a JEOS ``base`` with direct-boot files."""
    assemblies = pcloud_home.images_dir / "assemblies"
    assemblies.mkdir(parents=True)
    (assemblies / "web.qcow2").write_bytes(b"qcow2")
    jeos = pcloud_home.images_dir / "jeos" / "base"
    jeos.mkdir(parents=True)
    record = {"kernel": str(jeos / "vmlinuz"), "initrd": str(jeos / "initrd.img")}
    (jeos / "jeos.json").write_text(json.dumps(record | {"cmdline": "root=LABEL=r console=ttyS0"}))
    return pcloud_home.images_dir


@pytest.fixture
def host() -> FakeHost:
    return FakeHost()


@pytest.fixture
async def driver(pcloud_home: Paths, images: Path, host: FakeHost) -> AsyncIterator[LibvirtDriver]:
    made = LibvirtDriver(pcloud_home, {"uri": URI, "start_timeout": "2s"}, host=host)
    yield made
    for instance in await made.list("shop"):
        await made.destroy(instance.instance_id)
    await made.close()


def web() -> Assembly:
    return Assembly(name="web", uuid=UUID, image="base")


def other_connection() -> Any:
    """What an operator or another process would do (``virsh destroy``)."""
    return libvirt.open(URI)


# ---------------------------------------------------------------------------
# settings


def test_default_settings(pcloud_home: Paths) -> None:
    settings = LibvirtSettings.parse({}, pcloud_home, root=True)
    assert settings.uri == "qemu:///system"
    assert settings.network == "user"
    assert settings.domain_type == "auto"
    assert settings.images == pcloud_home.images_dir / "assemblies"
    assert settings.start_timeout > 60  # emulated guests boot slowly
    assert LibvirtSettings.parse({}, pcloud_home, root=False).uri == "qemu:///session"


def test_every_bad_setting_is_reported_with_its_key(pcloud_home: Paths) -> None:
    bad = {"uri": "no uri", "network": "-x", "domain_type": "xen", "memory": "lots"}
    bad |= {"cpus": "0", "images": "relative", "start_timeout": "soon", "colour": "blue"}
    with pytest.raises(InvalidInput) as caught:
        LibvirtSettings.parse(bad, pcloud_home)
    assert sorted(p["path"] for p in caught.value.details) == [f"settings.{k}" for k in sorted(bad)]


def test_make_driver_knows_libvirt(pcloud_home: Paths) -> None:
    driver = make_driver("libvirt", pcloud_home, {"uri": URI})
    assert isinstance(driver, LibvirtDriver)
    assert isinstance(driver, InstanceWatcher)


# ---------------------------------------------------------------------------
# domain XML and metadata


def meta(**changes: Any) -> InstanceMeta:
    values: dict[str, Any] = dict(
        instance_id="pc-shop-web-0a0b0c0d",
        deployable="shop",
        assembly="web",
        directory="/var/lib/x/vms/shop/pc-shop-web-0a0b0c0d",
        network="user",
        ssh_host="127.0.0.1",
        ssh_port=42001,
        address="10.0.2.15",
        created_at=1700000000.5,
    )
    return InstanceMeta(**(values | changes))


def spec(**changes: Any) -> DomainSpec:
    values: dict[str, Any] = dict(
        name="pc-shop-web-0a0b0c0d",
        domain_type="qemu",
        memory_mb=1024,
        cpus=2,
        disk=Path("/v/disk.qcow2"),
        console_log=Path("/v/console.log"),
        meta=meta(),
        kernel=Path("/j/vmlinuz"),
        initrd=Path("/j/initrd.img"),
        cmdline="root=LABEL=r console=ttyS0",
    )
    return DomainSpec(**(values | changes))


def test_metadata_round_trip() -> None:
    original = meta(ready=True, mac="52:54:00:01:02:03")
    assert InstanceMeta.from_xml(original.to_xml()) == original


@pytest.mark.parametrize("text", ["", "<instance/>", "<instance><ssh_port>x</ssh_port></instance>"])
def test_incomplete_metadata_is_none(text: str) -> None:
    assert InstanceMeta.from_xml(text) is None


def test_user_network_domain_forwards_ssh_to_loopback() -> None:
    root = ET.fromstring(domain_xml(spec()))
    assert root.get("type") == "qemu"
    assert root.findtext("os/kernel") == "/j/vmlinuz"
    assert root.findtext("os/cmdline") == "root=LABEL=r console=ttyS0"
    assert root.find("devices/interface") is None
    args = [a.get("value") for a in root.iter(f"{{{QEMU_NS}}}arg")]
    assert "user,id=pcnet0,hostfwd=tcp:127.0.0.1:42001-:22" in args
    assert any(a and a.startswith("virtio-net-pci") and "addr=0x10" in a for a in args)
    stored = root.find(f"metadata/{{{METADATA_NS}}}instance")
    assert stored is not None
    assert InstanceMeta.from_xml(ET.tostring(stored, encoding="unicode")) == meta()


def test_libvirt_network_domain_and_disk_boot() -> None:
    networked = meta(network="default", ssh_host="", ssh_port=22, mac="52:54:00:aa:bb:cc")
    root = ET.fromstring(domain_xml(spec(meta=networked, kernel=None, domain_type="kvm")))
    assert root.find("os/kernel") is None
    assert root.find("os/boot") is not None
    assert root.find("cpu") is not None and root.find("cpu").get("mode") == "host-passthrough"  # type: ignore[union-attr]
    nic = root.find("devices/interface")
    assert nic is not None and nic.find("source").get("network") == "default"  # type: ignore[union-attr]
    assert not list(root.iter(f"{{{QEMU_NS}}}commandline"))


# ---------------------------------------------------------------------------
# the driver on test:///default


async def test_create_list_state_destroy(
    driver: LibvirtDriver, host: FakeHost, pcloud_home: Paths
) -> None:
    instance = await driver.create("shop", web(), KEYS)
    assert instance.state == InstanceState.RUNNING
    assert (instance.ssh_host, instance.ssh_port) == ("127.0.0.1", host.next_port)
    assert instance.address == "10.0.2.15" and instance.hostname == "web"
    backing, overlay = host.overlays[-1]
    assert backing == pcloud_home.images_dir / "assemblies" / "web.qcow2"
    assert overlay.exists() and overlay.parent.name == instance.instance_id
    domain = other_connection().lookupByName(instance.instance_id)
    assert ET.fromstring(domain.XMLDesc()).get("type") == "qemu"  # no usable KVM
    assert [i.instance_id for i in await driver.list("shop")] == [instance.instance_id]
    assert await driver.list("other") == []
    assert await driver.state(instance.instance_id) == InstanceState.RUNNING
    await driver.destroy(instance.instance_id)
    assert await driver.state(instance.instance_id) == InstanceState.GONE
    assert not overlay.parent.exists()
    assert await driver.list("shop") == []
    await driver.destroy(instance.instance_id)  # idempotent


async def test_kvm_when_usable(driver: LibvirtDriver, host: FakeHost) -> None:
    host.kvm = True
    instance = await driver.create("shop", web(), KEYS)
    domain = other_connection().lookupByName(instance.instance_id)
    assert ET.fromstring(domain.XMLDesc()).get("type") == "kvm"


async def test_a_new_driver_adopts_instances(
    driver: LibvirtDriver, pcloud_home: Paths, host: FakeHost
) -> None:
    created = await driver.create("shop", web(), KEYS)
    restarted = LibvirtDriver(pcloud_home, {"uri": URI}, host=host)
    try:
        (found,) = await restarted.list("shop")
    finally:
        await restarted.close()
    assert found == created


async def test_each_instance_has_its_own_overlay(driver: LibvirtDriver) -> None:
    first = await driver.create("shop", web(), KEYS)
    second = await driver.create("shop", web(), KEYS)
    assert first.instance_id != second.instance_id
    assert first.extra["dir"] != second.extra["dir"]
    assert first.ssh_port != second.ssh_port


async def test_a_powered_off_vm_is_stopped(driver: LibvirtDriver) -> None:
    instance = await driver.create("shop", web(), KEYS)
    other_connection().lookupByName(instance.instance_id).destroy()
    assert await driver.state(instance.instance_id) == InstanceState.STOPPED
    (listed,) = await driver.list("shop")
    assert listed.state == InstanceState.STOPPED


async def test_missing_disk_or_jeos_is_refused_and_leaves_nothing(
    driver: LibvirtDriver, pcloud_home: Paths
) -> None:
    with pytest.raises(NotFound, match=r"settings\.images"):
        await driver.create("shop", Assembly(name="db", uuid=UUID, image="base"), KEYS)
    with pytest.raises(NotFound, match=r"settings\.jeos_images"):
        await driver.create("shop", Assembly(name="web", uuid=UUID, image="gone"), KEYS)
    with pytest.raises(InvalidInput, match="host"):
        await driver.create("shop", Assembly(name="web", uuid=UUID, image="host"), KEYS)
    assert not (pcloud_home.state_dir / "vms").exists()


async def test_boot_timeout_leaves_nothing(
    driver: LibvirtDriver, host: FakeHost, pcloud_home: Paths
) -> None:
    host.answering = False
    with pytest.raises(OperationTimeout, match="did not answer"):
        await driver.create("shop", web(), KEYS)
    assert await driver.list("shop") == []
    assert list((pcloud_home.state_dir / "vms").glob("*/*")) == []


async def test_a_vm_that_stops_while_booting_fails_the_create(
    driver: LibvirtDriver, host: FakeHost, pcloud_home: Paths
) -> None:
    host.answering = False
    host.on_probe = lambda: [
        d.destroy() for d in other_connection().listAllDomains(1) if d.name().startswith("pc-shop-")
    ]
    with pytest.raises(Unavailable, match="stopped while booting"):
        await driver.create("shop", web(), KEYS)
    assert await driver.list("shop") == []


async def test_unreachable_libvirt_is_unavailable(pcloud_home: Paths, images: Path) -> None:
    driver = LibvirtDriver(pcloud_home, {"uri": "test:///nonexistent/file.xml"}, host=FakeHost())
    with pytest.raises(Unavailable, match="cannot connect to libvirt"):
        await driver.list("shop")


# ---------------------------------------------------------------------------
# lifecycle events


async def test_events_report_deaths_not_fences(driver: LibvirtDriver) -> None:
    seen: asyncio.Queue[tuple[str, InstanceState]] = asyncio.Queue()
    watch = await driver.watch(lambda instance_id, state: seen.put_nowait((instance_id, state)))
    fenced = await driver.create("shop", web(), KEYS)
    killed = await driver.create("shop", web(), KEYS)
    await driver.destroy(fenced.instance_id)
    other_connection().lookupByName(killed.instance_id).destroy()
    async with asyncio.timeout(10):
        first = await seen.get()
    assert first == (killed.instance_id, InstanceState.STOPPED)
    other_connection().lookupByName(killed.instance_id).undefine()
    async with asyncio.timeout(10):
        assert await seen.get() == (killed.instance_id, InstanceState.GONE)
    watch.close()
    watch.close()


def test_the_engine_waits_for_a_create_as_long_as_the_boot_may_take(pcloud_home: Paths) -> None:
    from dpe.dped_process import driver_options
    from dpe.engine_timing import EngineOptions

    slow = LibvirtDriver(pcloud_home, {"uri": URI, "start_timeout": "600s"}, host=FakeHost())
    assert driver_options(EngineOptions(), slow).create_timeout > 600.0
    usual = LibvirtDriver(pcloud_home, {"uri": URI}, host=FakeHost())
    assert driver_options(EngineOptions(), usual) == EngineOptions()
