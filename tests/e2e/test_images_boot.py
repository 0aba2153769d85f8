"""Boot an assembly image with qemu: sshd takes the assembly's key and shows the pinned host key."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest

from images import qemu
from tests.e2e.conftest import Made

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

BOOT_TIMEOUT = 240.0


@dataclass(frozen=True)
class Booted:
    made: Made
    port: int
    seconds: float


@pytest.fixture(scope="module")
def booted(
    two_assemblies: dict[str, Made], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Booted]:
    made = two_assemblies["web"]
    logs = tmp_path_factory.mktemp("boot")
    port = qemu.free_tcp_port()
    vm = qemu.QemuVM(
        qemu.BootSpec(
            disk=made.image.path,
            kernel=made.image.kernel,
            initrd=made.image.initrd,
            cmdline=made.image.cmdline or "",
            ssh_port=port,
            serial_log=logs / "serial.log",
            memory_mb=1024,
            cpus=2,
        )
    )
    vm.start()
    try:
        seconds = vm.wait_for_ssh_banner(BOOT_TIMEOUT)
        print(f"\nguest sshd answered {seconds:.1f} s after qemu started (accel {vm.spec.accel})")
        yield Booted(made, port, seconds)
    finally:
        vm.stop()
    assert vm.proc is not None and vm.proc.poll() is not None


def _ssh(
    booted: Booted, known_hosts: Path, *command: str, options: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    argv = [
        "ssh", *options, "-i", str(booted.made.keys.private_key), "-p", str(booted.port),
        "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=20",
        "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}",
        "root@127.0.0.1", *command,
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_sshd_accepts_the_key_and_presents_the_pinned_host_key(
    booted: Booted, tmp_path: Path
) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{booted.port} {booted.made.keys.host_public_key}\n")
    done = _ssh(booted, known_hosts, "hostname; cat /etc/machine-id; systemctl is-system-running")
    assert done.returncode == 0, done.stderr
    hostname, machine_id, state = done.stdout.split()
    assert (hostname, machine_id) == ("web", booted.made.uuid)
    assert state in ("running", "degraded"), state


def test_another_host_key_is_refused(
    booted: Booted, two_assemblies: dict[str, Made], tmp_path: Path
) -> None:
    known_hosts = tmp_path / "known_hosts"
    other = two_assemblies["db"].keys.host_public_key
    known_hosts.write_text(f"[127.0.0.1]:{booted.port} {other}\n")
    done = _ssh(booted, known_hosts, "true")
    assert done.returncode == 255
    assert "HOST IDENTIFICATION HAS CHANGED" in done.stderr or "verification failed" in done.stderr


HOST_KEY_FAMILIES = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521",
    "rsa-sha2-512,rsa-sha2-256,ssh-rsa",
)


@pytest.mark.parametrize("algorithms", HOST_KEY_FAMILIES)
def test_sshd_offers_no_other_host_key(booted: Booted, tmp_path: Path, algorithms: str) -> None:
    """Only the pinned key's type is offered: asked for any other, sshd has none."""
    pinned = booted.made.keys.host_public_key
    offered = pinned.split()[0] in algorithms.split(",")
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{booted.port} {pinned}\n" if offered else "")
    done = _ssh(booted, known_hosts, "true", options=("-o", f"HostKeyAlgorithms={algorithms}"))
    if offered:
        assert done.returncode == 0, done.stderr
    else:
        assert done.returncode == 255
        assert "no matching host key type found" in done.stderr, done.stderr


async def test_asyncssh_logs_in_with_the_pem_key(booted: Booted) -> None:
    known = asyncssh.import_known_hosts(
        f"[127.0.0.1]:{booted.port} {booted.made.keys.host_public_key}\n"
    )
    async with asyncssh.connect(
        "127.0.0.1",
        booted.port,
        username="root",
        client_keys=[str(booted.made.keys.private_key)],
        known_hosts=known,
        connect_timeout=20,
    ) as conn:
        result = await conn.run("cat /etc/hostname", check=True, timeout=20)
    assert result.stdout == "web\n"


def test_network_has_the_user_mode_address(booted: Booted, tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{booted.port} {booted.made.keys.host_public_key}\n")
    done = _ssh(booted, known_hosts, "ip -4 -o addr show dev eth0; ip route show default")
    assert done.returncode == 0, done.stderr
    assert "inet 10.0.2.15/24" in done.stdout
    assert "default via 10.0.2.2" in done.stdout
