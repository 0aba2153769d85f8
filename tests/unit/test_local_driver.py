"""Local driver pieces without processes: settings, records, sshd config, /proc parsing."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any, NoReturn

import pytest

from dpe.drivers import _local_instance, _netns, _procfs
from dpe.drivers._local_instance import write_json
from dpe.drivers.local import (
    INIT_RECORD,
    METADATA,
    InitRecord,
    InstanceRecord,
    Layout,
    LocalDriver,
    LocalSettings,
)
from dpe.drivers.registry import make_driver
from dpe.interfaces import InstanceState
from foundation.errors import Conflict, InvalidInput
from foundation.keyfiles import AssemblyKeys
from foundation.paths import Paths

# ---------------------------------------------------------------------------
# settings


def test_default_settings() -> None:
    settings = LocalSettings.parse({}, root=True)
    assert settings.network == "loopback"
    assert str(settings.subnet) == "10.236.0.0/24"
    assert settings.pid_namespace is True
    assert settings.start_timeout == 10.0


def test_no_pid_namespace_without_root() -> None:
    assert LocalSettings.parse({}, root=False).pid_namespace is False
    assert LocalSettings.parse({"pid_namespace": "no"}, root=True).pid_namespace is False


def test_every_bad_setting_is_reported_with_its_key() -> None:
    bad = {"network": "wifi", "subnet": "300.1.0.0/24", "pid_namespace": "maybe"}
    bad |= {"start_timeout": "soon", "colour": "blue"}
    with pytest.raises(InvalidInput) as caught:
        LocalSettings.parse(bad, root=True)
    paths = sorted(p["path"] for p in caught.value.details)
    assert paths == [f"settings.{k}" for k in sorted(bad)]


@pytest.mark.parametrize("subnet", ["8.8.8.0/24", "10.0.0.0/31", "127.0.0.0/8"])
def test_subnet_must_be_private_and_big_enough(subnet: str) -> None:
    with pytest.raises(InvalidInput, match=r"settings\.subnet"):
        LocalSettings.parse({"subnet": subnet}, root=True)


def test_start_timeout_is_a_duration() -> None:
    assert LocalSettings.parse({"start_timeout": "1500ms"}, root=True).start_timeout == 1.5


def test_unknown_infrastructure_is_refused(tmp_path: Path) -> None:
    paths = Paths(tmp_path / "etc", tmp_path / "state", tmp_path / "run")
    with pytest.raises(InvalidInput, match="openstack"):
        make_driver("openstack", paths, {})


def test_registry_passes_the_settings(tmp_path: Path) -> None:
    paths = Paths(tmp_path / "etc", tmp_path / "state", tmp_path / "run")
    with pytest.raises(InvalidInput, match=r"settings\.colour"):
        make_driver("local", paths, {"colour": "blue"})


# ---------------------------------------------------------------------------
# an instance's files


def keys(tmp_path: Path) -> AssemblyKeys:
    host = tmp_path / "host-key"
    host.write_text("-----BEGIN RSA PRIVATE KEY-----\nxx\n-----END RSA PRIVATE KEY-----\n")
    return AssemblyKeys(tmp_path / "key", "ssh-rsa AAAA root@web", host, "ssh-rsa BBBB")


def test_layout_creates_private_files_and_agent_directories(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "shop" / "web" / "web-1")
    layout.create(keys(tmp_path))
    assert layout.authorized_keys.read_text() == "ssh-rsa AAAA root@web\n"
    assert layout.host_key.stat().st_mode & 0o077 == 0
    assert layout.authorized_keys.stat().st_mode & 0o077 == 0
    for directory in layout.agent_environment().values():
        assert Path(directory).is_dir() and directory.startswith(str(layout.root))


def test_sshd_config_pins_address_keys_and_session_environment(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "web-1")
    layout.create(keys(tmp_path))
    layout.write_sshd_config("127.0.0.1", 2222, "root")
    lines = layout.sshd_config.read_text().splitlines()
    assert "ListenAddress 127.0.0.1:2222" in lines
    assert f'HostKey "{layout.host_key}"' in lines
    assert f'AuthorizedKeysFile "{layout.authorized_keys}"' in lines
    assert "PasswordAuthentication no" in lines and "AllowUsers root" in lines
    [setenv] = [line for line in lines if line.startswith("SetEnv ")]
    assert '"SHLVL=1"' in setenv
    assert f'"HA_RSCTMP={layout.root}/run/resource-agents"' in setenv


@pytest.mark.parametrize("name", ['we"b', "we\nb", "we\\b"])
def test_a_directory_sshd_could_not_parse_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidInput, match="instance directory"):
        Layout(tmp_path / name).create(keys(tmp_path))


def test_record_becomes_an_instance() -> None:
    record = InstanceRecord("web-1", "shop", "web", "127.0.0.1", 2222, "root", 12.5, ready=True)
    init = InitRecord(init_pid=42, pidns=True, start_time=7)
    instance = record.to_instance(Path("/x/web-1"), init, InstanceState.RUNNING)
    assert (instance.instance_id, instance.hostname, instance.ssh_port) == ("web-1", "web", 2222)
    assert instance.address == instance.ssh_host == "127.0.0.1"
    assert instance.extra["init_pid"] == "42" and instance.extra["pid_namespace"] == "yes"
    assert instance.created_at == 12.5


# ---------------------------------------------------------------------------
# state and list from the files (this test process stands in for a guest's init)


def fake_instance(paths: Paths, instance_id: str, init_pid: int, start_time: int) -> Path:
    directory = paths.instances_dir / "shop" / "web" / instance_id
    directory.mkdir(parents=True)
    record = InstanceRecord(instance_id, "shop", "web", "127.0.0.1", 1, "root", 1.0, ready=True)
    (directory / METADATA).write_text(json.dumps(asdict(record)))
    init = InitRecord(init_pid=init_pid, pidns=False, start_time=start_time)
    (directory / INIT_RECORD).write_text(json.dumps(asdict(init)))
    return directory


@pytest.fixture
def driver(tmp_path: Path) -> LocalDriver:
    return LocalDriver(Paths(tmp_path / "etc", tmp_path / "state", tmp_path / "run"))


async def test_state_follows_the_init_process_and_its_start_time(driver: LocalDriver) -> None:
    me = _procfs.read_stat(os.getpid())
    assert me is not None
    fake_instance(driver.paths, "web-live", me.pid, me.start_time)
    fake_instance(driver.paths, "web-reused", me.pid, me.start_time + 1)
    assert await driver.state("web-live") == InstanceState.RUNNING
    assert await driver.state("web-reused") == InstanceState.STOPPED
    assert await driver.state("web-none") == InstanceState.GONE
    listed = {i.instance_id: i.state for i in await driver.list("shop")}
    assert listed == {"web-live": InstanceState.RUNNING, "web-reused": InstanceState.STOPPED}


class NoSearch(type(Path())):  # type: ignore[misc]
    """An instances directory that may not be searched (the remembered place must do)."""

    def glob(self, pattern: str) -> NoReturn:  # type: ignore[override]
        raise AssertionError(f"searched for {pattern}")


async def test_an_instance_is_searched_for_once_then_remembered(driver: LocalDriver) -> None:
    me = _procfs.read_stat(os.getpid())
    assert me is not None
    directory = fake_instance(driver.paths, "web-live", me.pid, me.start_time)
    assert await driver.state("web-live") == InstanceState.RUNNING
    searched_before = driver.instances_dir
    driver.instances_dir = NoSearch(searched_before)
    assert await driver.state("web-live") == InstanceState.RUNNING
    driver.instances_dir = searched_before
    shutil.rmtree(directory)  # destroyed: the remembered place is not trusted
    assert await driver.state("web-live") == InstanceState.GONE


async def test_an_instances_records_are_read_again_only_once_replaced(
    driver: LocalDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    me = _procfs.read_stat(os.getpid())
    assert me is not None
    directory = fake_instance(driver.paths, "web-live", me.pid, me.start_time)
    reads: list[str] = []
    real_read = _local_instance._read_json

    def counted_read(path: Path) -> dict[str, Any] | None:
        reads.append(path.name)
        return real_read(path)

    monkeypatch.setattr(_local_instance, "_read_json", counted_read)
    for _ in range(3):
        assert await driver.state("web-live") == InstanceState.RUNNING
    assert sorted(reads) == [INIT_RECORD, METADATA]  # the first look only
    init = InitRecord(init_pid=me.pid, pidns=False, start_time=me.start_time + 1)
    write_json(directory / INIT_RECORD, asdict(init))  # a new init (by rename, as the guest's)
    assert await driver.state("web-live") == InstanceState.STOPPED
    (directory / METADATA).unlink()
    assert await driver.state("web-live") == InstanceState.GONE


async def test_an_instance_without_init_record_is_pending(driver: LocalDriver) -> None:
    directory = fake_instance(driver.paths, "web-new", 1, 1)
    (directory / INIT_RECORD).unlink()
    assert await driver.state("web-new") == InstanceState.PENDING


async def test_names_are_checked_before_use_as_paths(driver: LocalDriver) -> None:
    with pytest.raises(InvalidInput):
        await driver.list("../etc")
    assert await driver.state("*") == InstanceState.GONE


# ---------------------------------------------------------------------------
# /proc parsing


def test_parse_stat_with_a_command_name_holding_parentheses() -> None:
    fields = " ".join(["S", "1", "200", "300"] + ["0"] * 15 + ["4242"] + ["0"] * 10)
    stat = _procfs.parse_stat(f"123 (a) (b c) {fields}".encode())
    assert stat is not None
    assert (stat.pid, stat.comm, stat.state, stat.ppid) == (123, "a) (b c", "S", 1)
    assert (stat.pgrp, stat.session, stat.start_time) == (200, 300, 4242)
    assert stat.alive


def test_a_zombie_is_not_alive() -> None:
    fields = " ".join(["Z", "1", "1", "1"] + ["0"] * 30)
    stat = _procfs.parse_stat(f"9 (x) {fields}".encode())
    assert stat is not None and not stat.alive


def test_garbage_is_no_stat() -> None:
    assert _procfs.parse_stat(b"nonsense") is None


def test_descendants_walks_the_tree() -> None:
    def stat(pid: int, ppid: int) -> _procfs.ProcStat:
        return _procfs.ProcStat(pid, "x", "S", ppid, pid, pid, 0)

    stats = [stat(2, 1), stat(3, 2), stat(4, 3), stat(5, 1), stat(6, 99)]
    assert sorted(s.pid for s in _procfs.descendants(2, stats)) == [3, 4]
    assert sorted(s.pid for s in _procfs.descendants(1, stats)) == [2, 3, 4, 5]


def test_this_process_is_alive_and_guarded_by_its_start_time() -> None:
    me = _procfs.read_stat(os.getpid())
    assert me is not None
    assert _procfs.is_alive(me.pid, me.start_time)
    assert not _procfs.is_alive(me.pid, me.start_time + 1)


# ---------------------------------------------------------------------------
# network namespaces (names and addresses only)


def test_netns_needs_root() -> None:
    with pytest.raises(InvalidInput, match="root"):
        LocalSettings.parse({"network": "netns"}, root=False)
    assert LocalSettings.parse({"network": "netns"}, root=True).network == "netns"


def test_interface_names_fit_the_kernels_limit() -> None:
    subnet = ipaddress.IPv4Network("10.236.0.0/24")
    assert len(_netns.bridge_name(subnet)) <= 15
    assert len(_netns.veth_name("a" * 70 + "-0123abcd")) <= 15
    assert _netns.veth_name("web-1") != _netns.veth_name("web-2")


def test_free_address_skips_the_bridge_and_used_ones() -> None:
    subnet = ipaddress.IPv4Network("10.236.0.0/29")
    assert str(_netns.gateway(subnet)) == "10.236.0.1"
    assert str(_netns.free_address(subnet, [])) == "10.236.0.2"
    assert str(_netns.free_address(subnet, ["10.236.0.2", "10.236.0.4"])) == "10.236.0.3"
    with pytest.raises(Conflict, match="no free address"):
        _netns.free_address(subnet, [f"10.236.0.{n}" for n in range(2, 7)])


def test_used_addresses_come_from_every_deployables_records(tmp_path: Path) -> None:
    for deployable, address in [("a", "10.236.0.2"), ("b", "10.236.0.3"), ("c", "127.0.0.1")]:
        directory = tmp_path / deployable / "web" / "web-1"
        directory.mkdir(parents=True)
        (directory / "instance.json").write_text(json.dumps({"address": address}))
    used = _netns.used_addresses(tmp_path, ipaddress.IPv4Network("10.236.0.0/24"))
    assert sorted(used) == ["10.236.0.2", "10.236.0.3"]
