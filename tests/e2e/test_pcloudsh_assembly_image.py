"""pcloudsh makes assembly disks from a real JEOS: read back with libguestfs.

The whole path an admin takes: ``jeos_import`` of a built JEOS into a real
cped, then ``assembly_create`` and ``assembly_clone`` (libguestfs customizes
each disk), then ``assembly_delete`` removes the clone's disk and keys.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from foundation.keyfiles import load_assembly_keys
from foundation.paths import Paths, resolve
from images import customize, jeos
from tests.conftest import make_home
from tests.e2e.conftest import require_guestfs

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
STEP_TIMEOUT = 300


class Admin:
    """One-shot pcloudsh processes on a home of their own."""

    def __init__(self, home: Path) -> None:
        self.paths: Paths = resolve({"PCLOUD_HOME": str(home)})
        self.env = dict(os.environ, PCLOUD_HOME=str(home))
        self.env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pcloudsh", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=STEP_TIMEOUT,
        )

    def ok(self, *args: str) -> str:
        done = self.run(*args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done.stdout


@pytest.fixture
def admin() -> Iterator[Admin]:
    require_guestfs()
    home = make_home()
    admin = Admin(home)
    admin.ok("start")
    try:
        yield admin
    finally:
        admin.run("stop")
        shutil.rmtree(home, ignore_errors=True)


def _identity_matches(admin: Admin, name: str) -> dict[str, str | None]:
    disk = admin.paths.images_dir / "assemblies" / f"{name}.qcow2"
    found = customize.read_identity(disk)
    keys = load_assembly_keys(admin.paths.keys_dir, name)
    record = json.loads(admin.ok("--json", "assembly_list"))
    uuid = next(a["uuid"] for a in record if a["name"] == name)
    assert found["hostname"] == f"{name}\n"
    assert found["machine_id"] == f"{uuid}\n"
    assert found["authorized_keys"] == keys.public_key + "\n"
    assert found["host_public_key"] == keys.host_public_key + "\n"
    return found


def test_assembly_create_and_clone_customize_their_own_disks(
    admin: Admin, jeos_record: jeos.JeosRecord
) -> None:
    admin.ok(
        "jeos_import",
        "base",
        str(jeos_record.path),
        "--kernel",
        str(jeos_record.kernel),
        "--initrd",
        str(jeos_record.initrd),
    )
    admin.ok("assembly_create", "web", "base")
    admin.ok("assembly_clone", "web", "web2")

    web = _identity_matches(admin, "web")
    web2 = _identity_matches(admin, "web2")
    for field in ("hostname", "machine_id", "authorized_keys", "host_public_key"):
        assert web[field] != web2[field], field

    admin.ok("assembly_delete", "web2")
    assert not (admin.paths.images_dir / "assemblies" / "web2.qcow2").exists()
    assert not list(admin.paths.keys_dir.glob("web2*"))
    assert (admin.paths.images_dir / "assemblies" / "web.qcow2").exists()
