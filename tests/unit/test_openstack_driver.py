"""The openstack driver against a hand-written cloud (``fake_cloud``): images
uploaded once per content, servers created with the assembly's identity,
fenced until the API says they are gone, their deaths seen in the servers
list, and a cloud that does not answer never taken for a dead server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from dpe.drivers import openstack
from dpe.drivers._openstack_cloud import CloudRefused, CloudUnreachable
from dpe.drivers._openstack_settings import OpenStackSettings
from dpe.drivers.openstack import OpenStackDriver, ServerPoller, keypair_name, user_data
from dpe.drivers.registry import make_driver
from dpe.interfaces import InstanceState, InstanceWatcher, Notifying
from foundation.errors import InvalidInput, NotFound, OperationTimeout
from foundation.keyfiles import AssemblyKeys
from foundation.model import Assembly
from foundation.paths import Paths
from images import pcloud_firstboot
from tests.unit.fake_cloud import FakeCloud

SETTINGS = {"cloud": "test", "flavor": "m1.small", "network": "provider"}
HOST_PUBLIC = "ssh-rsa AAAAhost pinned"
ROOT_PUBLIC = "ssh-rsa AAAAroot login"


class FakeTools:
    """Disks whose backing chain is declared by the test; flattening copies the top."""

    def __init__(self) -> None:
        self.chains: dict[Path, list[Path]] = {}
        self.flattened: list[Path] = []

    async def backing_chain(self, disk: Path) -> list[Path]:
        return self.chains.get(disk, [disk])

    async def flatten(self, disk: Path, dest: Path) -> None:
        self.flattened.append(disk)
        dest.write_bytes(b"flat " + disk.read_bytes())


class FakeProbe:
    def __init__(self) -> None:
        self.answering = True

    async def answers_ssh(self, host: str, port: int) -> bool:
        return self.answering


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openstack, "BOOT_POLL", 0.001)
    monkeypatch.setattr(openstack, "DELETE_POLL", 0.001)


@pytest.fixture
def images(pcloud_home: Paths) -> Path:
    """Disks for ``web`` and ``db`` and a JEOS ``base`` that boots its own kernel."""
    assemblies = pcloud_home.images_dir / "assemblies"
    assemblies.mkdir(parents=True)
    (assemblies / "web.qcow2").write_bytes(b"web disk")
    (assemblies / "db.qcow2").write_bytes(b"db disk")
    jeos = pcloud_home.images_dir / "jeos" / "base"
    jeos.mkdir(parents=True)
    (jeos / "vmlinuz").write_bytes(b"kernel")
    (jeos / "initrd.img").write_bytes(b"initrd")
    record = {"kernel": str(jeos / "vmlinuz"), "initrd": str(jeos / "initrd.img")}
    (jeos / "jeos.json").write_text(json.dumps(record | {"cmdline": "root=LABEL=r"}))
    return pcloud_home.images_dir


@pytest.fixture
def keys(tmp_path: Path) -> AssemblyKeys:
    host = tmp_path / "web.host"
    host.write_text("-----BEGIN PRIVATE KEY-----\nhost\n-----END PRIVATE KEY-----\n")
    return AssemblyKeys(tmp_path / "web", ROOT_PUBLIC, host, HOST_PUBLIC)


@pytest.fixture
def cloud() -> FakeCloud:
    return FakeCloud()


@pytest.fixture
def tools() -> FakeTools:
    return FakeTools()


@pytest.fixture
async def driver(
    pcloud_home: Paths, images: Path, cloud: FakeCloud, tools: FakeTools
) -> AsyncIterator[OpenStackDriver]:
    settings = OpenStackSettings.parse(SETTINGS | {"delete_timeout": "1"}, pcloud_home)
    made = OpenStackDriver(pcloud_home, settings, cloud, tools=tools, probe=FakeProbe())
    notices: list[str] = []
    made.set_notice(notices.append)
    made.notices = notices  # type: ignore[attr-defined]
    yield made
    await made.close()


def web() -> Assembly:
    return Assembly("web", "b0e7a6f4-1d3c-4d8e-9f00-112233445566", "base")


def db() -> Assembly:
    return Assembly("db", "c0e7a6f4-1d3c-4d8e-9f00-112233445566", "base")


# -- settings ---------------------------------------------------------------


def test_settings_name_every_missing_and_unknown_key(pcloud_home: Paths) -> None:
    with pytest.raises(InvalidInput) as caught:
        OpenStackSettings.parse({"flavor": "f", "colour": "red", "images": "rel"}, pcloud_home)
    message = str(caught.value)
    for expected in ("settings.cloud", "settings.network", "settings.colour", "settings.images"):
        assert expected in message
    assert "settings.flavor" not in message


def test_bad_settings_are_refused_before_openstacksdk_is_needed(pcloud_home: Paths) -> None:
    with pytest.raises(InvalidInput, match=r"settings\.network"):
        make_driver("openstack", pcloud_home, {"cloud": "c", "flavor": "f"})


async def test_the_settings_check_names_what_the_cloud_lacks(
    pcloud_home: Paths, cloud: FakeCloud
) -> None:
    wrong = SETTINGS | {"flavor": "huge", "security_group": "open", "availability_zone": "moon"}
    driver = OpenStackDriver(pcloud_home, OpenStackSettings.parse(wrong, pcloud_home), cloud)
    try:
        with pytest.raises(InvalidInput) as caught:
            await openstack.check_settings(driver)
    finally:
        await driver.close()
    message = str(caught.value)
    assert "no flavor 'huge'" in message
    assert "no security group 'open'" in message
    assert "no zone 'moon'" in message
    assert "network" not in message


def test_the_driver_is_a_watcher_that_takes_notices(driver: OpenStackDriver) -> None:
    assert isinstance(driver, InstanceWatcher)
    assert isinstance(driver, Notifying)
    assert driver.create_timeout > driver.settings.start_timeout


# -- creating ------------------------------------------------------------------


async def test_create_uploads_the_images_and_boots_a_marked_server(
    driver: OpenStackDriver, cloud: FakeCloud, keys: AssemblyKeys
) -> None:
    instance = await driver.create("shop", web(), keys)

    assert [u.disk_format for u in cloud.uploads] == ["aki", "ari", "qcow2"]
    kernel, ramdisk, disk = cloud.uploads
    assert disk.properties["kernel_id"] == cloud.find_image(kernel.name, _sha(kernel)).id  # type: ignore[union-attr]
    assert disk.properties["ramdisk_id"] == cloud.find_image(ramdisk.name, _sha(ramdisk)).id  # type: ignore[union-attr]
    assert disk.properties["os_command_line"] == "root=LABEL=r"
    spec = cloud.specs[instance.instance_id]
    assert spec.name.startswith("pc-shop-web-")
    assert spec.metadata["pcloud_deployable"] == "shop"
    assert spec.metadata["pcloud_assembly"] == "web"
    assert spec.key_name == keypair_name(ROOT_PUBLIC)
    assert cloud.keypairs[spec.key_name] == ROOT_PUBLIC
    assert instance.address == instance.ssh_host == cloud.addresses[instance.instance_id]
    assert (instance.ssh_port, instance.hostname, instance.state) == (22, "web", "running")
    assert any("uploaded" in notice for notice in driver.notices)  # type: ignore[attr-defined]


async def test_the_same_content_is_uploaded_once(
    driver: OpenStackDriver, cloud: FakeCloud, keys: AssemblyKeys
) -> None:
    await driver.create("shop", web(), keys)
    await driver.create("shop", web(), keys)
    await driver.create("shop", db(), keys)
    kinds = [u.disk_format for u in cloud.uploads]
    assert kinds == ["aki", "ari", "qcow2", "qcow2"]  # db shares the JEOS kernel and initrd


async def test_a_changed_disk_is_a_new_image(
    driver: OpenStackDriver, cloud: FakeCloud, keys: AssemblyKeys, images: Path
) -> None:
    await driver.create("shop", web(), keys)
    (images / "assemblies" / "web.qcow2").write_bytes(b"web disk, changed")
    await driver.create("shop", web(), keys)
    disks = [u.name for u in cloud.uploads if u.disk_format == "qcow2"]
    assert len(disks) == 2 and disks[0] != disks[1]


async def test_an_overlay_is_uploaded_flattened(
    driver: OpenStackDriver,
    cloud: FakeCloud,
    tools: FakeTools,
    keys: AssemblyKeys,
    images: Path,
) -> None:
    disk = images / "assemblies" / "web.qcow2"
    tools.chains[disk] = [disk, images / "jeos" / "base" / "vmlinuz"]
    await driver.create("shop", web(), keys)
    assert tools.flattened == [disk]
    assert cloud.uploads[-1].path.name.endswith(".qcow2")
    assert not cloud.uploads[-1].path.exists()  # the flattened copy is removed


async def test_the_config_drive_carries_the_identity_the_first_boot_step_applies(
    driver: OpenStackDriver, cloud: FakeCloud, keys: AssemblyKeys, tmp_path: Path
) -> None:
    instance = await driver.create("shop", web(), keys)
    text = cloud.specs[instance.instance_id].user_data
    assert text.startswith("#cloud-config\n")
    document = pcloud_firstboot.parse(text)
    assert document is not None
    root = tmp_path / "guest"
    (root / "etc/ssh").mkdir(parents=True)
    (root / "etc/ssh/ssh_host_ed25519_key").write_text("another key")
    done = pcloud_firstboot.apply(root, document)
    assert done == {"hostname": "web", "authorized_keys": 1, "host_key": "rsa"}
    assert (root / "etc/hostname").read_text() == "web\n"
    assert "127.0.1.1\tweb" in (root / "etc/hosts").read_text()
    assert (root / "root/.ssh/authorized_keys").read_text() == ROOT_PUBLIC + "\n"
    assert (root / "etc/ssh/ssh_host_rsa_key.pub").read_text() == HOST_PUBLIC + "\n"
    assert (root / "etc/ssh/ssh_host_rsa_key").read_text() == keys.host_private_key.read_text()
    assert sorted(p.name for p in (root / "etc/ssh").glob("ssh_host_*")) == [
        "ssh_host_rsa_key",
        "ssh_host_rsa_key.pub",
    ]


def test_an_ecdsa_host_key_is_applied_and_named_to_sshd(keys: AssemblyKeys, tmp_path: Path) -> None:
    """Assembly keys are ECDSA P-256 by default: the first boot step writes the key
    under its own type and tells sshd to offer it (the JEOS names only the RSA path)."""
    ecdsa = "ecdsa-sha2-nistp256 AAAAecdsa pinned"
    document = pcloud_firstboot.parse(
        user_data("web", AssemblyKeys(keys.private_key, ROOT_PUBLIC, keys.host_private_key, ecdsa))
    )
    assert document is not None
    root = tmp_path / "guest"
    done = pcloud_firstboot.apply(root, document)
    assert done["host_key"] == "ecdsa"
    assert (root / "etc/ssh/ssh_host_ecdsa_key.pub").read_text() == ecdsa + "\n"
    dropin = root / "etc/ssh/sshd_config.d/pacemaker-cloud-hostkey.conf"
    assert dropin.read_text() == "HostKey /etc/ssh/ssh_host_ecdsa_key\n"


def test_the_first_boot_step_ignores_user_data_that_is_not_ours() -> None:
    assert pcloud_firstboot.parse(None) is None
    assert pcloud_firstboot.parse("#!/bin/sh\necho hi\n") is None
    assert pcloud_firstboot.parse("#cloud-config\npackages: [nginx]\n") is None
    assert pcloud_firstboot.parse('#cloud-config\n{"hostname": "x"}\n') is None


def test_user_data_is_refused_for_an_unknown_host_key_type(keys: AssemblyKeys) -> None:
    odd = AssemblyKeys(keys.private_key, ROOT_PUBLIC, keys.host_private_key, "ssh-dss AAAA x")
    with pytest.raises(InvalidInput, match="ssh-dss"):
        user_data("web", odd)


async def test_a_server_in_error_is_refused_with_nova_s_fault_and_deleted(
    driver: OpenStackDriver, cloud: FakeCloud, keys: AssemblyKeys
) -> None:
    cloud.boot_status, cloud.boot_fault = (
        "ERROR",
        "No valid host was found. There are not enough hosts available.",
    )
    with pytest.raises(CloudRefused, match="No valid host"):
        await driver.create("shop", web(), keys)
    assert cloud.servers_by_id == {}


async def test_a_quota_refusal_names_the_cause_and_leaves_no_server(
    driver: OpenStackDriver, cloud: FakeCloud, keys: AssemblyKeys
) -> None:
    cloud.refuse_create = (
        "quota exceeded: Quota exceeded for instances: Requested 1, but already used 10 of 10"
    )
    with pytest.raises(CloudRefused, match="quota exceeded"):
        await driver.create("shop", web(), keys)
    assert cloud.servers_by_id == {}


async def test_a_missing_disk_is_not_found(
    driver: OpenStackDriver, keys: AssemblyKeys, images: Path
) -> None:
    (images / "assemblies" / "web.qcow2").unlink()
    with pytest.raises(NotFound, match=r"web\.qcow2"):
        await driver.create("shop", web(), keys)


async def test_a_server_that_never_answers_ssh_times_out_and_is_deleted(
    pcloud_home: Paths, images: Path, cloud: FakeCloud, keys: AssemblyKeys
) -> None:
    settings = OpenStackSettings.parse(SETTINGS | {"start_timeout": "0.05"}, pcloud_home)
    probe = FakeProbe()
    probe.answering = False
    driver = OpenStackDriver(pcloud_home, settings, cloud, tools=FakeTools(), probe=probe)
    try:
        with pytest.raises(OperationTimeout, match="Booting from ROM"):
            await driver.create("shop", web(), keys)
    finally:
        await driver.close()
    assert cloud.servers_by_id == {}


async def test_the_host_jeos_is_refused(driver: OpenStackDriver, keys: AssemblyKeys) -> None:
    with pytest.raises(InvalidInput, match="only the local infrastructure"):
        await driver.create(
            "shop", Assembly("web", "b0e7a6f4-1d3c-4d8e-9f00-112233445566", "host"), keys
        )


# -- fencing ---------------------------------------------------------------------


async def test_destroy_returns_once_the_api_says_the_server_is_gone(
    driver: OpenStackDriver, cloud: FakeCloud, keys: AssemblyKeys
) -> None:
    instance = await driver.create("shop", web(), keys)
    await driver.destroy(instance.instance_id)
    assert cloud.servers_by_id == {}
    assert await driver.state(instance.instance_id) is InstanceState.GONE
    await driver.destroy(instance.instance_id)  # idempotent


async def test_a_soft_deleted_server_is_force_deleted(
    driver: OpenStackDriver, cloud: FakeCloud, keys: AssemblyKeys
) -> None:
    cloud.soft_delete = True
    instance = await driver.create("shop", web(), keys)
    await driver.destroy(instance.instance_id)
    assert cloud.deletes == [(instance.instance_id, False), (instance.instance_id, True)]
    assert cloud.servers_by_id == {}


async def test_a_server_the_cloud_does_not_delete_is_not_fenced(
    driver: OpenStackDriver, cloud: FakeCloud, keys: AssemblyKeys
) -> None:
    instance = await driver.create("shop", web(), keys)
    cloud.stuck.add(instance.instance_id)
    with pytest.raises(CloudRefused, match="does not delete it, so it is not fenced"):
        await driver.destroy(instance.instance_id)


async def test_an_unreachable_cloud_fails_the_fence(
    driver: OpenStackDriver, cloud: FakeCloud, keys: AssemblyKeys
) -> None:
    instance = await driver.create("shop", web(), keys)
    cloud.unreachable = True
    with pytest.raises(CloudUnreachable):
        await driver.destroy(instance.instance_id)


# -- state and list -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("ACTIVE", InstanceState.RUNNING),
        ("BUILD", InstanceState.PENDING),
        ("SHUTOFF", InstanceState.STOPPED),
        ("ERROR", InstanceState.STOPPED),
        ("SOFT_DELETED", InstanceState.GONE),
    ],
)
async def test_state_follows_nova_s_status(
    driver: OpenStackDriver, cloud: FakeCloud, keys: AssemblyKeys, status: str, state: InstanceState
) -> None:
    instance = await driver.create("shop", web(), keys)
    cloud.set_status(instance.instance_id, status)
    assert await driver.state(instance.instance_id) is state


async def test_list_finds_the_deployable_s_servers_by_their_marks(
    driver: OpenStackDriver, cloud: FakeCloud, keys: AssemblyKeys
) -> None:
    first = await driver.create("shop", web(), keys)
    second = await driver.create("shop", db(), keys)
    await driver.create("shop2", web(), keys)
    listed = await driver.list("shop")
    assert [i.instance_id for i in listed] == [first.instance_id, second.instance_id]
    assert [i.assembly for i in listed] == ["web", "db"]
    assert listed[0].ssh_host == first.ssh_host


# -- watching ---------------------------------------------------------------------


async def test_a_deleted_or_stopped_server_is_reported_once(
    driver: OpenStackDriver, cloud: FakeCloud, keys: AssemblyKeys
) -> None:
    reports: list[tuple[str, InstanceState]] = []
    poller = ServerPoller(driver, lambda i, s: reports.append((i, s)))
    first = await driver.create("shop", web(), keys)
    second = await driver.create("shop", db(), keys)
    assert await poller.once()
    assert reports == []
    cloud.remove(first.instance_id)
    cloud.set_status(second.instance_id, "SHUTOFF")
    await poller.once()
    await poller.once()
    assert sorted(reports) == sorted(
        [(first.instance_id, InstanceState.GONE), (second.instance_id, InstanceState.STOPPED)]
    )


async def test_a_server_fenced_by_the_driver_is_no_news(
    driver: OpenStackDriver, cloud: FakeCloud, keys: AssemblyKeys
) -> None:
    reports: list[tuple[str, InstanceState]] = []
    poller = ServerPoller(driver, lambda i, s: reports.append((i, s)))
    instance = await driver.create("shop", web(), keys)
    await poller.once()
    await driver.destroy(instance.instance_id)
    await poller.once()
    assert reports == []


async def test_an_unreachable_api_is_a_notice_with_back_off_never_a_death(
    driver: OpenStackDriver, cloud: FakeCloud, keys: AssemblyKeys
) -> None:
    reports: list[tuple[str, InstanceState]] = []
    poller = ServerPoller(driver, lambda i, s: reports.append((i, s)))
    await driver.create("shop", web(), keys)
    cloud.unreachable = True
    delays = [poller.once_delay(await poller.once(), 3.0) for _ in range(6)]
    assert reports == []
    assert delays == sorted(delays) and delays[-1] == openstack.MAX_POLL_BACKOFF
    cloud.unreachable = False
    assert poller.once_delay(await poller.once(), 3.0) == 3.0
    notices = [n for n in driver.notices if "API" in n]  # type: ignore[attr-defined]
    assert len(notices) == 2
    assert "does not answer" in notices[0] and "no server is fenced" in notices[0]
    assert "answers again" in notices[1]


async def test_watch_runs_until_closed(driver: OpenStackDriver) -> None:
    watch = await driver.watch(lambda i, s: None)
    await asyncio.sleep(0)
    watch.close()


def _sha(upload: object) -> str:
    return str(upload.properties["pcloud_sha256"])  # type: ignore[attr-defined]


# -- nova's notifications -------------------------------------------------------------


def _notification(event_type: str, server_id: str, state: str = "active") -> bytes:
    message = {
        "event_type": event_type,
        "publisher_id": "nova-compute:host",
        "payload": {"nova_object.data": {"uuid": server_id, "state": state}},
    }
    return json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(message)}).encode()


@pytest.mark.parametrize(
    ("event_type", "state", "expected"),
    [
        ("instance.delete.start", "active", InstanceState.GONE),
        ("instance.power_off.start", "active", InstanceState.STOPPED),
        ("instance.shutdown.end", "active", InstanceState.STOPPED),
        ("instance.update", "error", InstanceState.STOPPED),
        ("instance.update", "active", None),
        ("instance.create.end", "active", None),
    ],
)
def test_notifications_that_end_a_server_become_states(
    event_type: str, state: str, expected: InstanceState | None
) -> None:
    pytest.importorskip("pika")
    from dpe.drivers.openstack_notify import server_event

    event = server_event(_notification(event_type, "abc", state))
    assert (event[1] if event else None) is expected
    assert server_event(b"not json") is None
    assert server_event(b'{"oslo.message": "{}"}') is None


def test_the_broker_url_is_oslo_s_first_host_as_amqp(tmp_path: Path) -> None:
    pytest.importorskip("pika")
    from dpe.drivers.openstack_notify import Broker

    path = tmp_path / "rabbitmq.json"
    path.write_text(json.dumps({"url": "rabbit://u:secret@10.1.2.3:5672,u:secret@h2:5672/"}))
    broker = Broker.from_file(path)
    assert broker.url.startswith("amqp://u:secret@10.1.2.3:5672/?")
    assert (broker.host, broker.exchange, broker.topic) == (
        "10.1.2.3",
        "nova",
        "versioned_notifications",
    )
    path.write_text("{}")
    with pytest.raises(InvalidInput, match="no broker url"):
        Broker.from_file(path)


async def test_a_death_seen_by_both_paths_is_reported_once(
    driver: OpenStackDriver, cloud: FakeCloud, keys: AssemblyKeys
) -> None:
    reports: list[tuple[str, InstanceState]] = []
    poller = ServerPoller(driver, lambda i, s: reports.append((i, s)))
    instance = await driver.create("shop", web(), keys)
    poller.report(instance.instance_id, InstanceState.GONE, "instance.delete.start")
    cloud.remove(instance.instance_id)
    await poller.once()
    poller.report("someone-else-s", InstanceState.GONE, "instance.delete.start")
    assert reports == [(instance.instance_id, InstanceState.GONE)]


# -- purging what was uploaded --------------------------------------------------------


async def test_purge_removes_an_assembly_s_images_but_kernels_others_boot(
    driver: OpenStackDriver, cloud: FakeCloud, keys: AssemblyKeys
) -> None:
    await driver.create("shop", web(), keys)
    await driver.create("shop", db(), keys)
    removed = await driver.purge(["web"], [keys.public_key])
    names = sorted(i.name for i in cloud.images.values())
    assert [n.split("-")[1] for n in names] == ["disk", "kernel", "ramdisk"]  # db's stay
    assert [n.split("-")[1] for n in removed["images"]] == ["disk"]
    assert removed["keypairs"] == [keypair_name(ROOT_PUBLIC)]
    assert cloud.keypairs == {}
    removed = await driver.purge(["db"], [])
    assert sorted(n.split("-")[1] for n in removed["images"]) == ["disk", "kernel", "ramdisk"]
    assert cloud.images == {}


def test_the_engine_waits_as_long_as_the_cloud_s_calls_may_take(driver: OpenStackDriver) -> None:
    from dpe.dped_process import driver_options
    from dpe.engine_timing import EngineOptions

    options = driver_options(EngineOptions(), driver)
    assert options.create_timeout > driver.settings.upload_timeout + driver.settings.start_timeout
    assert options.destroy_timeout > driver.settings.delete_timeout
    assert options.driver_timeout > driver.settings.call_timeout
    assert options.connect_timeout == EngineOptions().connect_timeout


async def test_a_slow_api_while_a_server_boots_does_not_fail_the_boot(
    driver: OpenStackDriver, cloud: FakeCloud, keys: AssemblyKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = iter([False, False, True])  # two reads time out, then the server is ACTIVE
    get_server = cloud.get_server

    def slow_then_fine(server_id: str) -> Any:
        if not next(answers, True):
            raise CloudUnreachable("reading server: the cloud did not answer within 60 s")
        return get_server(server_id)

    monkeypatch.setattr(cloud, "get_server", slow_then_fine)
    instance = await driver.create("shop", web(), keys)
    assert instance.instance_id in cloud.servers_by_id
