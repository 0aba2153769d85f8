"""The JEOS configuration written into a debootstrapped tree."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from images import rootfs


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """The parts of a debootstrapped tree that configure_tree looks at."""
    root = tmp_path / "root"
    units = root / "usr/lib/systemd/system"
    units.mkdir(parents=True)
    for unit in ("systemd-networkd.service", "systemd-networkd.socket", "ssh.service"):
        (units / unit).write_text("[Unit]\n")
    ssh = root / "etc/ssh"
    ssh.mkdir(parents=True)
    for name in ("ssh_host_rsa_key", "ssh_host_rsa_key.pub", "ssh_host_ed25519_key"):
        (ssh / name).write_text("shared by every clone\n")
    (root / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    (root / "var/lib/dbus").mkdir(parents=True)
    (root / "var/lib/dbus/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True)
    (wants / "networking.service").symlink_to("/usr/lib/systemd/system/networking.service")
    cache = root / "var/cache/apt/archives"
    cache.mkdir(parents=True)
    (cache / "bash_5.2_amd64.deb").write_bytes(b"x")
    (root / "root").mkdir()
    (root / "root/.bashrc").write_text('eval "$(pyenv init -)"\n')
    return root


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_no_host_key_or_machine_id_is_shared_by_clones(tree: Path) -> None:
    rootfs.configure_tree(tree)
    assert list((tree / "etc/ssh").glob("ssh_host_*")) == []
    assert (tree / "etc/machine-id").read_text() == ""
    assert os.readlink(tree / "var/lib/dbus/machine-id") == "/etc/machine-id"


def test_files_are_written_with_their_modes(tree: Path) -> None:
    rootfs.configure_tree(tree)
    for relative, mode, content in rootfs.FILES:
        assert (tree / relative).read_text() == content
        assert _mode(tree / relative) == mode, relative
    configuration = [c for _, _, c in rootfs.FILES if c is not rootfs.FIRSTBOOT]  # not a script
    assert "\n\n\n" not in "".join(configuration)


def test_sshd_offers_only_the_pinned_host_key(tree: Path) -> None:
    rootfs.configure_tree(tree)
    dropin = (tree / "etc/ssh/sshd_config.d/pacemaker-cloud.conf").read_text()
    host_keys = [line for line in dropin.splitlines() if line.startswith("HostKey")]
    assert host_keys == ["HostKey /etc/ssh/ssh_host_rsa_key"]
    assert "PasswordAuthentication no" in dropin


def test_units_are_enabled_and_masked(tree: Path) -> None:
    rootfs.configure_tree(tree)
    system = tree / "etc/systemd/system"
    assert os.readlink(system / "multi-user.target.wants/systemd-networkd.service") == (
        "/usr/lib/systemd/system/systemd-networkd.service"
    )
    assert os.readlink(system / "ssh.service.wants/pcloud-ssh-hostkey.service") == (
        "/etc/systemd/system/pcloud-ssh-hostkey.service"
    )
    assert os.readlink(system / "networking.service") == "/dev/null"
    assert not (system / "multi-user.target.wants/networking.service").is_symlink()
    assert os.readlink(tree / "etc/systemd/network/99-default.link") == "/dev/null"


def test_root_shell_is_lean_and_package_cache_is_gone(tree: Path) -> None:
    rootfs.configure_tree(tree)
    assert "pyenv" not in (tree / "root/.bashrc").read_text()
    assert list((tree / "var/cache/apt/archives").iterdir()) == []


def test_network_falls_back_to_the_user_mode_address() -> None:
    script = dict((p, c) for p, _, c in rootfs.FILES)["usr/local/sbin/pcloud-net-fallback"]
    assert "ip link set dev eth0 up" in script
    assert "ip addr replace 10.0.2.15/24 dev eth0" in script
    assert "default via 10.0.2.2" in script
    network = dict((p, c) for p, _, c in rootfs.FILES)["etc/systemd/network/50-pcloud-eth0.network"]
    assert "DHCP=ipv4" in network
    assert "console=ttyS0" in rootfs.KERNEL_CMDLINE and "net.ifnames=0" in rootfs.KERNEL_CMDLINE


def test_configure_twice_gives_the_same_tree(tree: Path) -> None:
    rootfs.configure_tree(tree)
    first = _snapshot(tree)
    rootfs.configure_tree(tree)
    assert _snapshot(tree) == first


def _snapshot(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            out[str(path.relative_to(root))] = "-> " + os.readlink(path)
        elif path.is_file():
            out[str(path.relative_to(root))] = f"{_mode(path):o} {path.read_text()}"
    return out


def test_slim_tree_keeps_copyrights_and_needed_modules(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for relative in (
        "usr/share/doc/bash/copyright",
        "usr/share/doc/bash/changelog.gz",
        "usr/share/man/man1/bash.1.gz",
        "usr/share/locale/de/LC_MESSAGES/x.mo",
        "usr/share/locale/locale.alias",
        "usr/lib/modules/6.1.0-9-amd64/kernel/sound/core/snd.ko",
        "usr/lib/modules/6.1.0-9-amd64/kernel/drivers/net/wireless/x.ko",
        "usr/lib/modules/6.1.0-9-amd64/kernel/drivers/net/virtio_net.ko",
    ):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text("x")
    assert rootfs.slim_tree(root) == ["6.1.0-9-amd64"]
    left = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert left == [
        "usr/lib/modules/6.1.0-9-amd64/kernel/drivers/net/virtio_net.ko",
        "usr/share/doc/bash/copyright",
        "usr/share/locale/locale.alias",
    ]
