"""Fixtures and helpers for the tests of real local guests (no tests here).

- ``ssh_keys``: an assembly's key pairs made with ``ssh-keygen -m PEM`` (root's
  login key and the host key), as ``AssemblyKeys``;
- ``other_host_key``: another host key, for "wrong host key" tests;
- ``local_driver``: a ``LocalDriver`` on a temporary ``PCLOUD_HOME`` (root: in
  PID namespaces); every instance left is destroyed afterwards;
- ``guest``: one running instance of assembly ``web`` with an open connection.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dpe.drivers import _procfs
from dpe.drivers.local import LocalDriver
from dpe.interfaces import Instance
from dpe.transport import SshConnection, SshTransport
from foundation.keyfiles import AssemblyKeys
from foundation.model import Assembly
from foundation.paths import Paths

CONNECT_TIMEOUT = 10.0


def make_key(path: Path) -> str:
    """A PEM RSA key at ``path``; returns its OpenSSH public line."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-m", "PEM", "-N", "", "-f", str(path)],
        check=True,
        timeout=30,
    )
    return path.with_name(path.name + ".pub").read_text().strip()


@pytest.fixture(scope="session")
def key_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="pc-keys-", dir="/tmp") as directory:
        yield Path(directory)


@pytest.fixture(scope="session")
def ssh_keys(key_dir: Path) -> AssemblyKeys:
    public = make_key(key_dir / "web")
    host_public = make_key(key_dir / "web.host")
    return AssemblyKeys(key_dir / "web", public, key_dir / "web.host", host_public)


@pytest.fixture(scope="session")
def other_host_key(key_dir: Path) -> str:
    return make_key(key_dir / "other.host")


def assembly(name: str = "web") -> Assembly:
    return Assembly(name=name, uuid="00000000-0000-4000-8000-000000000001")


@pytest.fixture
async def local_driver(pcloud_home: Paths) -> AsyncIterator[LocalDriver]:
    driver = LocalDriver(pcloud_home)
    try:
        yield driver
    finally:
        await destroy_everything(driver)


async def destroy_everything(driver: LocalDriver) -> None:
    for directory in driver.paths.instances_dir.glob("*/*/*"):
        await driver.destroy(directory.name)


@dataclass
class Guest:
    driver: LocalDriver
    instance: Instance
    keys: AssemblyKeys
    connection: SshConnection


@pytest.fixture
async def guest(local_driver: LocalDriver, ssh_keys: AssemblyKeys) -> AsyncIterator[Guest]:
    instance = await local_driver.create("shop", assembly(), ssh_keys)
    connection = await SshTransport().connect(instance, ssh_keys, CONNECT_TIMEOUT)
    try:
        yield Guest(local_driver, instance, ssh_keys, connection)
    finally:
        await connection.close()


def instance_processes(instance: Instance) -> list[_procfs.ProcStat]:
    """Every live process of an instance (its PID namespace, or its init's tree)."""
    init = int(instance.extra["init_pid"])
    namespace = _procfs.pid_namespace(init)
    if instance.extra["pid_namespace"] == "yes" and namespace:
        return _procfs.in_pid_namespace(namespace)
    stats = [s for s in _procfs.all_stats() if s.alive]
    return [s for s in stats if s.pid == init] + _procfs.descendants(init, stats)


def still_alive(processes: list[_procfs.ProcStat]) -> list[_procfs.ProcStat]:
    return [p for p in processes if _procfs.is_alive(p.pid, p.start_time)]


def agent_dirs(instance: Instance) -> Path:
    return Path(instance.extra["dir"])


def signal_the_living(pids: list[int], signum: int) -> list[int]:
    """Send signum to each pid still running; return those it reached."""
    reached = []
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            continue
        reached.append(pid)
    return reached
