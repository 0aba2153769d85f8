#!/usr/bin/python3
"""pacemaker-cloud's first-boot step: the identity an OpenStack config drive carries.

Installed in every JEOS as ``/usr/local/sbin/pcloud-firstboot`` and run by
``pcloud-firstboot.service`` before sshd, at every boot.  On a nova server
(SMBIOS vendor or product naming OpenStack) it mounts the config drive (label
``config-2``, read-only) and, when the server's user data is pacemaker-cloud's
(``#cloud-config`` written as JSON, marked ``pacemaker_cloud``), writes the
hostname, root's authorized key and the one SSH host key the engine pins.
Anywhere else it returns at once.  What it did is in ``/run/pcloud-firstboot``.

JEOS images have no cloud-init (a minimal Debian boots faster without it and
its dependencies); images that do have it read the same user data as
cloud-config.  Standard library only, for the guest's python3 (3.9 or newer).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

MARK = "pacemaker_cloud"
LABEL = "config-2"
MOUNT = "/run/pcloud-firstboot.d"
REPORT = "/run/pcloud-firstboot"
DRIVE_WAIT = 15.0  # udev may still be naming devices when the step starts
DMI_FILES = ("sys_vendor", "product_name", "chassis_asset_tag")
KEY_TYPES = ("rsa", "ecdsa", "ed25519")


def on_openstack(dmi: Path) -> bool:
    for name in DMI_FILES:
        try:
            if "openstack" in (dmi / name).read_text().lower():
                return True
        except OSError:
            continue
    return False


def find_drive(by_label: Path, wait: float) -> str | None:
    deadline = time.monotonic() + wait
    while True:
        link = by_label / LABEL
        if link.exists():
            return str(link.resolve())
        found = subprocess.run(["blkid", "-L", LABEL], capture_output=True, text=True)
        if found.returncode == 0 and found.stdout.strip():
            return found.stdout.strip()
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.5)


def read_user_data(device: str) -> str | None:
    os.makedirs(MOUNT, exist_ok=True)
    subprocess.run(["mount", "-o", "ro", device, MOUNT], check=True)
    try:
        path = Path(MOUNT, "openstack", "latest", "user_data")
        return path.read_text() if path.exists() else None
    finally:
        subprocess.run(["umount", MOUNT], check=False)


def parse(user_data: str | None) -> dict[str, Any] | None:
    """The identity document, or None when the user data is not ours."""
    if not user_data or not user_data.startswith("#cloud-config"):
        return None
    try:
        document = json.loads(user_data.split("\n", 1)[1])
    except (IndexError, ValueError):
        return None
    if not isinstance(document, dict) or not document.get(MARK):
        return None
    return document


def apply(root: Path, document: dict[str, Any]) -> dict[str, Any]:
    """Write the identity under ``root``; returns what was written."""
    done: dict[str, Any] = {}
    hostname = str(document.get("hostname") or "")
    if hostname:
        write(root / "etc/hostname", hostname + "\n", 0o644)
        write(root / "etc/hosts", hosts_with(read(root / "etc/hosts"), hostname), 0o644)
        done["hostname"] = hostname
    keys = [str(k).strip() for k in document.get("ssh_authorized_keys") or []]
    if keys:
        (root / "root/.ssh").mkdir(mode=0o700, parents=True, exist_ok=True)
        write(root / "root/.ssh/authorized_keys", "".join(k + "\n" for k in keys), 0o600)
        done["authorized_keys"] = len(keys)
    host_keys = document.get("ssh_keys") or {}
    for kind in KEY_TYPES:
        private = host_keys.get(f"{kind}_private")
        public = host_keys.get(f"{kind}_public")
        if private and public:
            set_host_key(root, kind, str(private), str(public))
            done["host_key"] = kind
    return done


def set_host_key(root: Path, kind: str, private: str, public: str) -> None:
    """The one host key sshd offers (the engine pins it): every other one goes."""
    ssh = root / "etc/ssh"
    for old in ssh.glob("ssh_host_*"):
        old.unlink()
    key = ssh / f"ssh_host_{kind}_key"
    write(key, private if private.endswith("\n") else private + "\n", 0o600)
    write(Path(str(key) + ".pub"), public.strip() + "\n", 0o644)
    if kind != "rsa":  # the JEOS's own sshd drop-in names the RSA key already
        dropin = ssh / "sshd_config.d/pacemaker-cloud-hostkey.conf"
        write(dropin, f"HostKey /etc/ssh/ssh_host_{kind}_key\n", 0o644)


def hosts_with(hosts: str, hostname: str) -> str:
    lines = [line for line in hosts.splitlines() if not line.startswith("127.0.1.1")]
    at = next((i + 1 for i, line in enumerate(lines) if line.startswith("127.0.0.1")), 0)
    lines.insert(at, f"127.0.1.1\t{hostname}")
    return "\n".join(lines) + "\n"


def read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return "127.0.0.1\tlocalhost\n"


def write(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".pcloud-new")
    temporary.write_text(text)
    os.chmod(temporary, mode)
    os.replace(temporary, path)


def main() -> int:
    report: dict[str, Any] = {"openstack": on_openstack(Path("/sys/class/dmi/id"))}
    if report["openstack"]:
        device = find_drive(Path("/dev/disk/by-label"), DRIVE_WAIT)
        report["config_drive"] = device
        document = parse(read_user_data(device)) if device else None
        if document is not None:
            report.update(apply(Path("/"), document))
            if report.get("hostname"):
                subprocess.run(["hostname", report["hostname"]], check=False)
    Path(REPORT).write_text(json.dumps(report) + "\n")
    print(f"pcloud-firstboot: {json.dumps(report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
