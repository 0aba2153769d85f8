"""Without a DHCP answer the guest falls back to qemu's user-mode address."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from images import qemu
from tests.e2e.conftest import Made

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

NO_DHCP = "systemd.mask=systemd-networkd.service systemd.mask=systemd-networkd.socket"


def test_static_fallback_when_no_dhcp_client_runs(
    two_assemblies: dict[str, Made], tmp_path: Path
) -> None:
    made = two_assemblies["db"]
    port = qemu.free_tcp_port()
    vm = qemu.QemuVM(
        qemu.BootSpec(
            disk=made.image.path,
            kernel=made.image.kernel,
            initrd=made.image.initrd,
            cmdline=f"{made.image.cmdline} {NO_DHCP}",
            ssh_port=port,
            serial_log=tmp_path / "serial.log",
            snapshot=True,
        )
    )
    vm.start()
    try:
        seconds = vm.wait_for_ssh_banner(300)
        print(f"\nguest without DHCP reachable after {seconds:.1f} s")
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{port} {made.keys.host_public_key}\n")
        done = subprocess.run(
            [
                "ssh", "-i", str(made.keys.private_key), "-p", str(port),
                "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={known_hosts}", "root@127.0.0.1",
                "ip -4 -o addr show dev eth0; ip route show default;"
                " systemctl is-active systemd-networkd || true",
            ],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        vm.stop()
    assert done.returncode == 0, done.stderr
    assert "inet 10.0.2.15/24" in done.stdout and "dynamic" not in done.stdout
    assert "default via 10.0.2.2" in done.stdout
    assert done.stdout.rstrip().endswith("inactive")
