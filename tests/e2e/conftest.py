"""One JEOS image for the whole e2e session (building it takes minutes).

``jeos_build`` builds it with ``images.jeos.build_jeos`` into a session
directory and removes it at the end.  To iterate quickly on other e2e tests,
``PCLOUD_E2E_JEOS_DIR=<dir>`` reuses ``<dir>/base`` when it exists (and builds
it there, keeping it, when it does not).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from foundation.keyfiles import AssemblyKeys
from images import customize, jeos, keys

JEOS_NAME = "base"
TOOLS = ("debootstrap", "mkfs.ext4", "qemu-img", "qemu-system-x86_64", "ssh", "ssh-keygen")


@dataclass(frozen=True)
class JeosBuild:
    record: jeos.JeosRecord
    seconds: float | None  # None when an earlier build was reused
    phases: tuple[str, ...]


def require_vm_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("e2e image tests need root (debootstrap, chroot)")
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"missing tools: {', '.join(missing)}")


def require_guestfs() -> None:
    try:
        import guestfs  # noqa: F401
    except ImportError:
        pytest.skip("the libguestfs Python binding (Debian python3-guestfs) is not importable")


@pytest.fixture(scope="session")
def jeos_build(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JeosBuild]:
    require_vm_tools()
    reuse = os.environ.get("PCLOUD_E2E_JEOS_DIR")
    out_dir = Path(reuse) if reuse else tmp_path_factory.mktemp("jeos")
    if reuse and (out_dir / JEOS_NAME / jeos.RECORD).exists():
        yield JeosBuild(jeos.load_jeos(out_dir, JEOS_NAME), None, ())
        return
    phases: list[str] = []
    started = time.monotonic()
    record = jeos.build_jeos(
        JEOS_NAME,
        out_dir=out_dir,
        progress=lambda phase, _f: phases.append(phase) if phase not in phases else None,
    )
    seconds = time.monotonic() - started
    print(f"\nbuild_jeos took {seconds:.0f} s; qcow2 {record.size / 2**20:.0f} MiB")
    yield JeosBuild(record, seconds, tuple(phases))
    if not reuse:
        jeos.delete_jeos(out_dir, JEOS_NAME)


@pytest.fixture(scope="session")
def jeos_record(jeos_build: JeosBuild) -> jeos.JeosRecord:
    return jeos_build.record


@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")


@pytest.fixture(scope="session")
def assembly_keys(keys_dir: Path) -> dict[str, AssemblyKeys]:
    return {name: keys.write_assembly_keys(keys_dir, name) for name in ("web", "db", "web2")}


@dataclass(frozen=True)
class Made:
    image: customize.AssemblyImage
    uuid: str
    keys: AssemblyKeys
    seconds: float


@pytest.fixture(scope="session")
def assemblies_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("assemblies")


def _stamper(marks: dict[tuple[str, float], float]) -> customize.Progress:
    """A progress callback noting when each (phase, fraction) was first reported."""
    return lambda phase, f: (
        None if (phase, f) in marks else marks.update({(phase, f): time.monotonic()})
    )


@pytest.fixture(scope="session")
def two_assemblies(
    jeos_record: jeos.JeosRecord,
    assembly_keys: dict[str, AssemblyKeys],
    assemblies_dir: Path,
) -> dict[str, Made]:
    """``web`` and ``db``, both copy-on-write overlays of the session's JEOS."""
    require_guestfs()
    made = {}
    for name in ("web", "db"):
        assembly_uuid = uuid.uuid4().hex
        marks: dict[tuple[str, float], float] = {}
        started = time.monotonic()
        image = customize.create_assembly_image(
            jeos_record,
            name,
            assembly_uuid,
            assembly_keys[name],
            assemblies_dir,
            progress=_stamper(marks),
        )
        seconds = time.monotonic() - started
        launch = marks[("launch", 1.0)] - marks[("launch", 0.0)]
        print(
            f"\ncreate_assembly_image({name}) took {seconds:.1f} s (guestfs launch {launch:.1f} s)"
        )
        made[name] = Made(image, assembly_uuid, assembly_keys[name], seconds)
    return made


# -- the all-in-one OpenStack (tools/openstack-aio) ------------------------------

RIG = Path(__file__).resolve().parents[2] / "tools" / "openstack-aio"
RIG_UP_TIMEOUT = 3000  # a cold build on a busy machine: debootstrap, apt, migrations


@dataclass(frozen=True)
class Rig:
    cloud: str
    clouds_yaml: Path
    rabbitmq: Path  # {"url", "exchange", "topic"}: the broker nova notifies on
    network: str
    security_group: str
    stack_ip: str


def rig_status() -> dict[str, object]:
    done = subprocess.run(
        [str(RIG), "status", "--json"], capture_output=True, text=True, timeout=120, check=False
    )
    try:
        status: dict[str, object] = json.loads(done.stdout)
    except ValueError:
        return {}
    return status


@pytest.fixture(scope="session")
def openstack_rig() -> Iterator[Rig]:
    """The rig, started once for the session (stopped again only if this session started it).

    Its own tier (``make test-openstack``, ``PCLOUD_E2E_OPENSTACK=1``): on these
    2-core machines the rig and two servers under TCG add 20 to 40 minutes,
    which ``make test``'s budget does not hold."""
    if os.environ.get("PCLOUD_E2E_OPENSTACK") != "1":
        pytest.skip("the OpenStack tier: make test-openstack (PCLOUD_E2E_OPENSTACK=1)")
    if os.geteuid() != 0:
        pytest.skip("the OpenStack rig (tools/openstack-aio) runs as root only")
    was_up = rig_status().get("state") == "up"
    started = time.monotonic()
    done = subprocess.run(
        [str(RIG), "up"], capture_output=True, text=True, timeout=RIG_UP_TIMEOUT, check=False
    )
    status = rig_status()
    if done.returncode != 0 or not status.get("healthy"):
        pytest.skip(f"the OpenStack rig could not start: {(done.stdout + done.stderr)[-3000:]}")
    print(f"\nopenstack-aio up took {time.monotonic() - started:.0f} s (was up: {was_up})")
    network = status["network"]
    assert isinstance(network, dict)
    try:
        yield Rig(
            cloud=str(status["cloud"]),
            clouds_yaml=Path(str(status["clouds_yaml"])),
            rabbitmq=Path(str(status["run_dir"])) / "rabbitmq.json",
            network=str(network["provider_network"]),
            security_group=str(network["security_group"]),
            stack_ip=str(network["stack_ip"]),
        )
    finally:
        if not was_up and not os.environ.get("PCLOUD_E2E_KEEP_RIG"):
            subprocess.run([str(RIG), "down"], capture_output=True, timeout=600, check=False)
