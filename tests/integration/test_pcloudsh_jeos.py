"""JEOS images with a real cped and the real image builder: import, list, refuse, delete.

The disk imported is a small empty qcow2 made with qemu-img (building one with
debootstrap takes minutes and a mirror: that is the e2e tier's).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import CpedProcess
from tests.integration.test_pcloudsh_events import Shell

APPLIANCE_TIMEOUT = 300.0

pytestmark = pytest.mark.integration


@pytest.fixture
def shell(cped: CpedProcess) -> Shell:
    return Shell(cped.paths)


@pytest.fixture
def disk(cped: CpedProcess) -> Path:
    path = cped.paths.state_dir / "upload.qcow2"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True, timeout=30
    )
    return path


def test_import_list_refuse_and_delete(shell: Shell, cped: CpedProcess, disk: Path) -> None:
    done = shell.run("jeos_import", "small", str(disk), "--release", "12")
    assert done.returncode == 0, done.stderr
    home = cped.paths.images_dir / "jeos" / "small"
    assert done.stdout.startswith("JEOS small imported (12, x86_64, ")
    assert done.stdout.strip().endswith(str(home / "disk.qcow2"))
    assert "pcloudsh: JEOS small: convert done" in done.stderr  # progress, not a terminal
    assert (home / "disk.qcow2").is_file()

    listed = {j["name"]: j for j in json.loads(shell.run("--json", "jeos_list").stdout)}
    assert listed["small"]["path"] == str(home / "disk.qcow2")
    assert listed["small"]["size"] == (home / "disk.qcow2").stat().st_size
    assert listed["small"]["checksum"].startswith("sha256:")
    table = shell.run("jeos_list").stdout
    assert any(
        line.split()[:4] == ["small", "image", "x86_64", "12"] for line in table.splitlines()
    )

    again = shell.run("jeos_import", "small", str(disk))
    assert again.returncode == 2 and "'small' already exists" in again.stderr

    # an image with no operating system cannot be customized: nothing is left behind
    # (libguestfs starts an appliance VM under TCG: tens of seconds on a loaded machine)
    failed = shell.run("assembly_create", "web", "small", timeout=APPLIANCE_TIMEOUT)
    assert failed.returncode == 2 and "no operating system found" in failed.stderr
    assert not list((cped.paths.images_dir / "assemblies").glob("*web*"))
    assert not list(cped.paths.keys_dir.glob("web*"))
    assert "web" not in shell.run("assembly_list").stdout

    # an assembly registered on the JEOS (through the API) keeps it from being deleted
    cped.client.create_assembly({"name": "web", "image": "small"})
    refused = shell.run("jeos_delete", "small")
    assert refused.returncode == 2 and "used by assemblies web" in refused.stderr
    assert (home / "disk.qcow2").is_file()

    assert shell.run("assembly_delete", "web").returncode == 0
    deleted = shell.run("jeos_delete", "small")
    assert (deleted.returncode, deleted.stdout) == (0, "JEOS small deleted (its files removed)\n")
    assert not home.exists()
    assert "small" not in shell.run("jeos_list").stdout


def test_a_bad_image_registers_nothing(shell: Shell, cped: CpedProcess) -> None:
    junk = cped.paths.state_dir / "junk.img"
    junk.write_bytes(b"")
    done = shell.run("jeos_import", "junk", str(junk))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "junk" not in shell.run("jeos_list").stdout
    assert not (cped.paths.images_dir / "jeos" / "junk").exists()
