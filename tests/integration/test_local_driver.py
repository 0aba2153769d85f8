"""The local driver with real sshd guests: create, state, list, destroy, adoption."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from dpe.drivers import _procfs
from dpe.drivers.local import LocalDriver
from dpe.drivers.registry import make_driver
from dpe.interfaces import Instance, InstanceState
from dpe.transport import SshTransport
from foundation.errors import NotFound, Unavailable
from foundation.keyfiles import AssemblyKeys
from foundation.paths import Paths
from tests.integration import test_local_driver_support as support
from tests.integration.test_local_driver_support import (
    CONNECT_TIMEOUT,
    Guest,
    assembly,
    instance_processes,
    still_alive,
)

# fixtures
key_dir, ssh_keys, local_driver, guest = (
    support.key_dir,
    support.ssh_keys,
    support.local_driver,
    support.guest,
)

pytestmark = pytest.mark.integration
ROOT = os.geteuid() == 0
REPO = Path(__file__).resolve().parents[2]


async def test_create_gives_a_reachable_guest_named_after_its_assembly(guest: Guest) -> None:
    instance = guest.instance
    assert instance.state == InstanceState.RUNNING
    assert (instance.address, instance.ssh_host, instance.hostname) == (
        "127.0.0.1",
        "127.0.0.1",
        "web",
    )
    assert instance.deployable == "shop" and instance.assembly == "web"
    result = await guest.connection.run("id -un", 5)
    assert result.stdout.strip() == instance.username
    assert await guest.driver.state(instance.instance_id) == InstanceState.RUNNING


async def test_metadata_is_written_in_the_instance_directory(guest: Guest) -> None:
    directory = Path(guest.instance.extra["dir"])
    assert (
        directory == guest.driver.paths.instances_dir / "shop" / "web" / guest.instance.instance_id
    )
    record = json.loads((directory / "instance.json").read_text())
    assert record["instance_id"] == guest.instance.instance_id
    assert record["port"] == guest.instance.ssh_port
    assert record["ready"] is True
    init = json.loads((directory / "init.json").read_text())
    stat = _procfs.read_stat(init["init_pid"])
    assert stat is not None and stat.start_time == init["start_time"]


@pytest.mark.skipif(not ROOT, reason="PID namespaces need root")
async def test_as_root_the_guest_has_its_own_pid_namespace_and_hostname(guest: Guest) -> None:
    result = await guest.connection.run("echo $$; hostname; ls /proc | grep -c '^[0-9]'", 5)
    shell_pid, hostname, count = result.stdout.split()
    assert hostname == "web"
    assert int(count) < 10  # only the guest's own processes are visible
    assert int(shell_pid) < 20
    assert guest.instance.extra["pid_namespace"] == "yes"


@pytest.mark.parametrize("pidns", ["yes", "no"] if ROOT else ["no"])
async def test_the_guest_init_keeps_only_its_reaper_which_reaps_orphans(
    pcloud_home: Paths, ssh_keys: AssemblyKeys, pidns: str
) -> None:
    """Once sshd runs, the init has become a shell (PID 1 of a namespace) or the reaping
    mode of the same file, with its pid and arguments but without its set-up's modules;
    an orphan that ends is reaped at once, and sshd is the init's child."""
    driver = LocalDriver(pcloud_home, {"pid_namespace": pidns})
    instance = await driver.create("shop", assembly(), ssh_keys)
    try:
        pid = int(instance.extra["init_pid"])
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if pidns == "yes":
            assert argv[0] == b"sh", argv
        else:
            assert b"--reaping" in argv, argv
        assert b"--record" in argv and any(a.endswith(b"_guest_init.py") for a in argv), argv
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert "_ctypes" not in maps and "libffi" not in maps
        sshd = _procfs.read_stat(int(instance.extra["sshd_pid"]))
        assert sshd is not None and sshd.ppid == pid and sshd.comm.startswith("sshd")
        connection = await SshTransport().connect(instance, ssh_keys, CONNECT_TIMEOUT)
        await connection.run("sh -c 'sleep 0.2 &'; true", 5)  # the sleep's parent is gone
        await connection.close()
        await asyncio.sleep(0.3)
        assert await _zombies_gone(instance), "an orphan was left a zombie"
        assert _procfs.is_alive(pid)  # the init itself runs on
    finally:
        await driver.destroy(instance.instance_id)


async def _zombies_gone(instance: Instance) -> bool:
    """True once no process of the instance is a zombie (within 2 s)."""
    init = int(instance.extra["init_pid"])
    namespace = _procfs.pid_namespace(init)
    for _ in range(100):
        stats = _procfs.all_stats()
        if instance.extra["pid_namespace"] == "yes":
            mine = [s for s in stats if _procfs.pid_namespace(s.pid) == namespace]
        else:
            mine = _procfs.descendants(init, stats)
        if not [s for s in mine if s.state == "Z"]:
            return True
        await asyncio.sleep(0.02)
    return False


async def test_the_guest_environment_points_agents_at_private_directories(guest: Guest) -> None:
    result = await guest.connection.run("echo $HA_RSCTMP; echo $HA_VARRUN; echo $SHLVL", 5)
    rsctmp, varrun, _ = result.stdout.split()
    directory = guest.instance.extra["dir"]
    assert rsctmp.startswith(directory) and Path(rsctmp).is_dir()
    assert varrun.startswith(directory) and Path(varrun).is_dir()


async def test_list_finds_the_instance_and_only_the_deployables(
    local_driver: LocalDriver, ssh_keys: AssemblyKeys
) -> None:
    first = await local_driver.create("shop", assembly("web"), ssh_keys)
    other = await local_driver.create("bank", assembly("db"), ssh_keys)
    listed = await local_driver.list("shop")
    assert [i.instance_id for i in listed] == [first.instance_id]
    assert listed[0].ssh_port == first.ssh_port
    assert listed[0].state == InstanceState.RUNNING
    assert [i.instance_id for i in await local_driver.list("bank")] == [other.instance_id]
    assert await local_driver.list("nothing") == []


async def test_destroy_kills_every_process_and_removes_the_directory(guest: Guest) -> None:
    quiet = ">/dev/null 2>&1 </dev/null"
    await guest.connection.run(f"setsid sleep 1000 {quiet} & sleep 1001 {quiet} & true", 5)
    processes = await wait_for_sleepers(guest.instance, 2)
    await guest.driver.destroy(guest.instance.instance_id)
    assert still_alive(processes) == []
    assert not Path(guest.instance.extra["dir"]).exists()
    # nothing kept of it (a dped sees a new instance at every restart)
    assert guest.instance.instance_id not in guest.driver._directories
    assert Path(guest.instance.extra["dir"]) not in guest.driver._records._known
    assert await guest.driver.state(guest.instance.instance_id) == InstanceState.GONE
    await guest.driver.destroy(guest.instance.instance_id)  # idempotent


async def test_destroy_of_an_unknown_instance_does_nothing(local_driver: LocalDriver) -> None:
    await local_driver.destroy("web-00000000")
    await local_driver.destroy("../../etc")
    assert await local_driver.state("web-00000000") == InstanceState.GONE


async def test_a_stopped_sshd_is_still_running_for_the_driver(guest: Guest) -> None:
    sshd = int(guest.instance.extra["sshd_pid"])
    os.kill(sshd, signal.SIGSTOP)
    try:
        assert await guest.driver.state(guest.instance.instance_id) == InstanceState.RUNNING
    finally:
        os.kill(sshd, signal.SIGCONT)


async def test_a_dead_guest_is_stopped_and_destroy_cleans_it(guest: Guest) -> None:
    processes = instance_processes(guest.instance)
    os.kill(int(guest.instance.extra["sshd_pid"]), signal.SIGKILL)
    await _until_state(guest, InstanceState.STOPPED)
    [listed] = await guest.driver.list("shop")
    assert listed.state == InstanceState.STOPPED
    await guest.driver.destroy(guest.instance.instance_id)
    assert still_alive(processes) == []
    assert await guest.driver.list("shop") == []


async def _until_state(guest: Guest, wanted: InstanceState) -> None:
    for _ in range(200):
        if await guest.driver.state(guest.instance.instance_id) == wanted:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"instance never became {wanted}")


async def wait_for_sleepers(instance: Instance, count: int) -> list[_procfs.ProcStat]:
    """The instance's processes, once ``count`` sleep commands run in it."""
    for _ in range(200):
        processes = instance_processes(instance)
        if sum(p.comm == "sleep" for p in processes) == count:
            return processes
        await asyncio.sleep(0.01)
    raise AssertionError(f"not {count} sleep processes in the instance")


CREATE_AND_EXIT = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path
    from dpe.drivers.local import LocalDriver
    from foundation.keyfiles import AssemblyKeys
    from foundation.model import Assembly
    from foundation.paths import resolve

    home, private, public, host_private, host_public, pidns = sys.argv[1:]
    keys = AssemblyKeys(Path(private), public, Path(host_private), host_public)
    driver = LocalDriver(resolve({"PCLOUD_HOME": home}), {"pid_namespace": pidns})
    instance = asyncio.run(driver.create("shop", Assembly("web", "u"), keys))
    print(json.dumps({"id": instance.instance_id, "port": instance.ssh_port}))
    """
)


@pytest.mark.parametrize("pidns", ["yes", "no"])
async def test_an_instance_outlives_its_creator_and_is_adopted(
    pcloud_home: Paths, ssh_keys: AssemblyKeys, pidns: str
) -> None:
    home = pcloud_home.state_dir.parent
    keys = [str(ssh_keys.private_key), ssh_keys.public_key]
    keys += [str(ssh_keys.host_private_key), ssh_keys.host_public_key]
    creator = subprocess.run(
        [sys.executable, "-c", CREATE_AND_EXIT, str(home), *keys, pidns],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert creator.returncode == 0, creator.stderr
    created = json.loads(creator.stdout)
    driver = LocalDriver(pcloud_home, {"pid_namespace": pidns})
    try:
        [adopted] = await driver.list("shop")
        assert (adopted.instance_id, adopted.ssh_port) == (created["id"], created["port"])
        assert adopted.state == InstanceState.RUNNING
        connection = await SshTransport().connect(adopted, ssh_keys, CONNECT_TIMEOUT)
        await connection.run("sleep 1000 >/dev/null 2>&1 & true", 5)
        await connection.close()
        processes = await wait_for_sleepers(adopted, 1)
    finally:
        await driver.destroy(created["id"])
    assert still_alive(processes) == []
    assert await driver.list("shop") == []


async def test_without_pid_namespace_destroy_kills_the_group_and_orphans(
    pcloud_home: Paths, ssh_keys: AssemblyKeys
) -> None:
    driver = LocalDriver(pcloud_home, {"pid_namespace": "no"})
    instance = await driver.create("shop", assembly(), ssh_keys)
    try:
        assert instance.extra["pid_namespace"] == "no"
        connection = await SshTransport().connect(instance, ssh_keys, CONNECT_TIMEOUT)
        daemon = "setsid sh -c 'sleep 1002 & sleep 1003' >/dev/null 2>&1 < /dev/null & true"
        await connection.run(daemon, 5)
        await connection.close()
        processes = await wait_for_sleepers(instance, 2)
    finally:
        await driver.destroy(instance.instance_id)
    assert still_alive(processes) == []


async def test_two_instances_of_one_assembly_are_separate(
    local_driver: LocalDriver, ssh_keys: AssemblyKeys
) -> None:
    first = await local_driver.create("shop", assembly(), ssh_keys)
    second = await local_driver.create("shop", assembly(), ssh_keys)
    assert first.instance_id != second.instance_id
    assert first.ssh_port != second.ssh_port
    await local_driver.destroy(first.instance_id)
    assert await local_driver.state(second.instance_id) == InstanceState.RUNNING


async def test_registry_makes_a_local_driver(pcloud_home: Paths) -> None:
    assert make_driver("local", pcloud_home, {}).name == "local"


async def test_a_missing_host_key_is_not_found_and_leaves_nothing(
    local_driver: LocalDriver, ssh_keys: AssemblyKeys, tmp_path: Path
) -> None:
    keys = replace(ssh_keys, host_private_key=tmp_path / "missing")
    with pytest.raises(NotFound, match="host key"):
        await local_driver.create("shop", assembly(), keys)
    assert list(local_driver.paths.instances_dir.glob("*/*/*")) == []


async def test_sshd_that_cannot_start_is_unavailable_with_its_log(
    local_driver: LocalDriver, ssh_keys: AssemblyKeys, tmp_path: Path
) -> None:
    garbage = tmp_path / "garbage"
    garbage.write_text("not a key\n")
    garbage.chmod(0o600)
    keys = replace(ssh_keys, host_private_key=garbage)
    with pytest.raises(Unavailable, match=r"sshd exited: .*host key"):
        await local_driver.create("shop", assembly(), keys)
    assert list(local_driver.paths.instances_dir.glob("*/*/*")) == []
