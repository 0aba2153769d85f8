"""build_jeos on this machine: time, files, record; failures and interrupts leave nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from foundation.errors import Conflict, InvalidInput
from images import debootstrap, jeos, qemu
from tests.e2e.conftest import JeosBuild, require_vm_tools

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def test_build_is_quick_and_complete(jeos_build: JeosBuild) -> None:
    record = jeos_build.record
    if jeos_build.seconds is not None:
        # how long it took is reported, not asserted: a loaded machine is slower
        print(f"\nbuild_jeos: {jeos_build.seconds:.0f} s, phases {jeos_build.phases}")
        assert jeos_build.phases == (
            "check", "debootstrap", "configure", "filesystem", "convert", "checksum",
        )  # fmt: skip
    info = qemu.image_info(record.path)
    assert (info.format, info.virtual_size, info.backing_file) == (
        "qcow2",
        record.virtual_size,
        None,
    )
    assert record.size == record.path.stat().st_size
    assert record.checksum == jeos.sha256_of(record.path)
    assert record.kernel is not None and record.kernel.stat().st_size > 1 << 20
    assert record.initrd is not None and record.initrd.stat().st_size > 1 << 20
    assert record.cmdline is not None and "console=ttyS0" in record.cmdline
    assert record.build_log is not None
    assert "Base system installed successfully" in record.build_log.read_text()
    stored = json.loads((record.path.parent / jeos.RECORD).read_text())
    assert jeos.JeosRecord.from_dict(stored) == record


def test_build_leaves_only_the_jeos_directory(jeos_build: JeosBuild) -> None:
    out_dir = jeos_build.record.path.parent.parent
    assert [p.name for p in out_dir.iterdir() if p.name.startswith(".")] == []
    assert not (out_dir / f"{jeos_build.record.name}.build.log").exists()
    assert debootstrap.mounts_under(out_dir) == []


def test_building_an_existing_name_is_a_conflict(jeos_build: JeosBuild) -> None:
    out_dir = jeos_build.record.path.parent.parent
    with pytest.raises(Conflict, match="already exists"):
        jeos.build_jeos(jeos_build.record.name, out_dir=out_dir)


def test_unknown_package_fails_cleanly(tmp_path: Path) -> None:
    require_vm_tools()
    with pytest.raises(InvalidInput, match="Couldn't find these debs: pcloud-no-such-package"):
        jeos.build_jeos("broken", packages=["pcloud-no-such-package"], out_dir=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.build.log"]
    assert debootstrap.mounts_under(tmp_path) == []


TREE_WAIT = 480.0  # seconds; the test's own timeout is 900

BUILD_SCRIPT = """
import sys
from pathlib import Path
from images import jeos
print("started", flush=True)
jeos.build_jeos("halted", out_dir=Path(sys.argv[1]))
"""


def test_interrupted_build_leaves_nothing(tmp_path: Path) -> None:
    require_vm_tools()
    proc = subprocess.Popen(
        [sys.executable, "-c", BUILD_SCRIPT, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=Path(__file__).parents[2],
        start_new_session=True,  # what the build started ends with it, should the test fail
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"started\n"
        # debootstrap downloads some 200 packages before it writes the tree: minutes
        # when the package registry is slow
        deadline = time.monotonic() + TREE_WAIT
        while time.monotonic() < deadline and not list(tmp_path.glob(".halted.work-*/root/usr")):
            time.sleep(0.5)  # interrupt once debootstrap is writing the tree
        assert list(tmp_path.glob(".halted.work-*/root/usr")), "debootstrap never started"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:  # the build and what it started, debootstrap included
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()  # reaped, its pipes closed
    assert b"KeyboardInterrupt" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["halted.build.log"]
    assert debootstrap.mounts_under(tmp_path) == []
