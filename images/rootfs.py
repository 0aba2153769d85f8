"""Turn a debootstrapped tree into a JEOS guest: boot, network, SSH, a lean shell.

Everything here writes plain files into the tree (no chroot), so it is quick
and testable on any directory.  What is per-assembly (hostname, machine-id,
keys) is left neutral here and set by ``images.customize``.

Networking works on qemu user-mode networking and on a libvirt bridge alike:
systemd-networkd (part of the ``systemd`` package, so nothing extra to
install and no extra start-up cost) asks DHCP for ``eth0``; qemu's user-mode
network has a built-in DHCP server that hands out 10.0.2.15/24 via 10.0.2.2,
libvirt's dnsmasq answers on a bridge.  Where no DHCP server answers, a small
unit falls back to the static user-mode address after a bounded wait.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from images import pcloud_firstboot

ROOT_LABEL = "pcloud-root"
KERNEL_CMDLINE = f"root=LABEL={ROOT_LABEL} ro console=ttyS0 net.ifnames=0 panic=10"
PLACEHOLDER_HOSTNAME = "jeos"
FALLBACK_ADDRESS = "10.0.2.15/24"
FALLBACK_GATEWAY = "10.0.2.2"
FALLBACK_WAIT_SECONDS = 60  # generous: a wrong fallback on a DHCP network would be worse
# The OpenStack config drive's identity (see images.pcloud_firstboot): its own source.
FIRSTBOOT = Path(pcloud_firstboot.__file__).read_text()

# (path in the guest, mode, content)
FILES: tuple[tuple[str, int, str], ...] = (
    ("etc/fstab", 0o644, f"LABEL={ROOT_LABEL} / ext4 defaults,errors=remount-ro 0 1\n"),
    ("etc/hostname", 0o644, f"{PLACEHOLDER_HOSTNAME}\n"),
    (
        "etc/hosts",
        0o644,
        f"127.0.0.1\tlocalhost\n127.0.1.1\t{PLACEHOLDER_HOSTNAME}\n"
        "::1\t\tlocalhost ip6-localhost ip6-loopback\n",
    ),
    ("etc/resolv.conf", 0o644, ""),
    ("etc/motd", 0o644, ""),
    (
        "etc/network/interfaces",
        0o644,
        "# eth0 is configured by systemd-networkd (/etc/systemd/network).\n"
        "auto lo\niface lo inet loopback\n\nsource /etc/network/interfaces.d/*\n",
    ),
    (
        "etc/systemd/network/50-pcloud-eth0.network",
        0o644,
        "[Match]\nName=eth0\n\n[Network]\nDHCP=ipv4\nLinkLocalAddressing=no\n"
        "IPv6AcceptRA=no\n\n[DHCPv4]\nUseDomains=no\n",
    ),
    (
        "usr/local/sbin/pcloud-net-fallback",
        0o755,
        "#!/bin/sh\n"
        "# No DHCP answer on eth0 in time: use the qemu user-mode address.\n"
        f"for i in $(seq {FALLBACK_WAIT_SECONDS}); do\n"
        "    ip -4 -o addr show dev eth0 scope global | grep -q inet && exit 0\n"
        "    sleep 1\n"
        "done\n"
        f"echo 'no DHCP answer on eth0: using {FALLBACK_ADDRESS} via {FALLBACK_GATEWAY}'\n"
        "ip link set dev eth0 up\n"
        f"ip addr replace {FALLBACK_ADDRESS} dev eth0\n"
        f"ip route replace default via {FALLBACK_GATEWAY} dev eth0\n",
    ),
    (
        "etc/systemd/system/pcloud-net-fallback.service",
        0o644,
        "[Unit]\nDescription=Static address for eth0 when DHCP does not answer\n"
        "After=systemd-networkd.service\nWants=systemd-networkd.service\n\n"
        "[Service]\nType=oneshot\nExecStart=/usr/local/sbin/pcloud-net-fallback\n"
        "StandardOutput=journal+console\n\n"
        "[Install]\nWantedBy=multi-user.target\n",
    ),
    (
        "etc/systemd/system/pcloud-ssh-hostkey.service",
        0o644,
        "[Unit]\nDescription=SSH host key for a guest that was given none\n"
        "ConditionPathExists=!/etc/ssh/ssh_host_rsa_key\nBefore=ssh.service\n\n"
        "[Service]\nType=oneshot\n"
        "ExecStart=/usr/bin/ssh-keygen -q -t rsa -b 2048 -N '' -f /etc/ssh/ssh_host_rsa_key\n\n"
        "[Install]\nWantedBy=ssh.service\n",
    ),
    ("usr/local/sbin/pcloud-firstboot", 0o755, FIRSTBOOT),
    (
        "etc/systemd/system/pcloud-firstboot.service",
        0o644,
        "[Unit]\nDescription=Identity from an OpenStack config drive (pacemaker-cloud)\n"
        "After=local-fs.target systemd-udevd.service\n"
        "Before=ssh.service pcloud-ssh-hostkey.service\n\n"
        "[Service]\nType=oneshot\nExecStart=/usr/local/sbin/pcloud-firstboot\n"
        "StandardOutput=journal+console\n\n"
        "[Install]\nWantedBy=ssh.service\n",
    ),
    (
        "etc/ssh/sshd_config.d/pacemaker-cloud.conf",
        0o644,
        "# The one host key the engine pins; no other key is offered.\n"
        "HostKey /etc/ssh/ssh_host_rsa_key\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUseDNS no\nPrintMotd no\nPrintLastLog no\n"
        "# The engine runs many commands at once on one connection.\n"
        "MaxSessions 100\nMaxStartups 100:30:200\n",
    ),
    # A lean root shell: remote commands must not pay for rc files.
    ("root/.profile", 0o644, '[ -n "$BASH" ] && [ -f ~/.bashrc ] && . ~/.bashrc\n'),
    ("root/.bashrc", 0o644, "[ -z \"$PS1\" ] && return\nPS1='\\h:\\w\\$ '\n"),
)

ENABLE = (
    # (unit, the target.wants directory it is enabled in)
    ("systemd-networkd.service", "multi-user.target.wants"),
    ("systemd-networkd.socket", "sockets.target.wants"),
    ("pcloud-net-fallback.service", "multi-user.target.wants"),
    ("pcloud-ssh-hostkey.service", "ssh.service.wants"),
    ("pcloud-firstboot.service", "ssh.service.wants"),
)
MASK = (
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "logd.service",  # cluster-glue's log daemon; the engine reads agents' output itself
    "networking.service",  # ifupdown only has lo, which systemd brings up anyway
)
REMOVE_GLOBS = (
    "etc/ssh/ssh_host_*",  # every clone must get its own host key
    "var/cache/apt/archives/*.deb",
    "var/lib/apt/lists/*_*",
    "etc/udev/rules.d/70-persistent-net.rules",
)


# Hardware a virtual machine never has: about 130 MB of kernel modules.
UNUSED_MODULE_DIRS = (
    "sound",
    "drivers/media",
    "drivers/net/wireless",
    "drivers/infiniband",
    "drivers/staging",
    "drivers/iio",
    "drivers/bluetooth",
    "drivers/isdn",
    "net/wireless",
    "net/bluetooth",
)


def slim_tree(root: Path) -> list[str]:
    """Drop documentation (copyright files stay), man pages, translations and unused modules.

    Returns the kernel versions whose module lists must be rebuilt (``depmod``).
    """
    for doc in (root / "usr/share/doc").glob("*/*"):
        if doc.name != "copyright":
            _remove(doc)
    for shared in ("usr/share/man", "usr/share/locale"):
        for entry in (root / shared).glob("*"):
            if entry.is_dir():  # keeps files such as locale.alias
                _remove(entry)
    kernels = sorted(p.name for p in (root / "usr/lib/modules").glob("*") if p.is_dir())
    for version in kernels:
        for relative in UNUSED_MODULE_DIRS:
            _remove(root / "usr/lib/modules" / version / "kernel" / relative)
    return kernels


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.is_symlink() or path.exists():
        path.unlink()


def configure_tree(root: Path) -> None:
    """Write the JEOS configuration into the debootstrapped tree at ``root``."""
    for pattern in REMOVE_GLOBS:
        for path in root.glob(pattern):
            path.unlink()
    for relative, mode, content in FILES:
        write_file(root / relative, content, mode)
    _neutral_machine_id(root)
    _enable_units(root)
    _mask_units(root)
    # Classic eth0 names even when booted without net.ifnames=0.
    _symlink(root / "etc/systemd/network/99-default.link", "/dev/null")


def write_file(path: Path, content: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    path.write_text(content)
    os.chmod(path, mode)


def _neutral_machine_id(root: Path) -> None:
    # Empty: systemd makes one at boot; assemblies get theirs from customize.
    write_file(root / "etc/machine-id", "", 0o444)
    _symlink(root / "var/lib/dbus/machine-id", "/etc/machine-id")


def _enable_units(root: Path) -> None:
    units = root / "usr/lib/systemd/system"
    local = root / "etc/systemd/system"
    for unit, wants in ENABLE:
        target = local / unit if (local / unit).exists() else units / unit
        _symlink(local / wants / unit, "/" + str(target.relative_to(root)))


def _mask_units(root: Path) -> None:
    local = root / "etc/systemd/system"
    for unit in MASK:
        for wants in local.glob("*.wants"):
            (wants / unit).unlink(missing_ok=True)  # links are absolute: dangling from here
        _symlink(local / unit, "/dev/null")


def _symlink(link: Path, target: str) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)
