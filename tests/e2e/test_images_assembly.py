"""Assembly images read back with libguestfs: each has its own identity, never shared."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from foundation.errors import Conflict, InvalidInput
from foundation.keyfiles import AssemblyKeys
from images import customize, jeos, qemu
from tests.e2e.conftest import Made, require_guestfs

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def _check_identity(found: dict[str, str | None], made: Made) -> None:
    name = made.image.assembly
    assert found["hostname"] == f"{name}\n"
    assert found["machine_id"] == f"{made.uuid}\n"
    assert found["authorized_keys"] == made.keys.public_key + "\n"
    assert found["host_public_key"] == made.keys.host_public_key + "\n"
    assert found["host_keys"] == "/etc/ssh/ssh_host_rsa_key /etc/ssh/ssh_host_rsa_key.pub"
    assert found["hosts"] is not None and f"127.0.1.1\t{name}\n" in found["hosts"]
    assert "\n\n" not in found["hosts"]


def test_two_assemblies_each_have_their_own_identity(two_assemblies: dict[str, Made]) -> None:
    found = {name: customize.read_identity(m.image.path) for name, m in two_assemblies.items()}
    for name, made in two_assemblies.items():
        _check_identity(found[name], made)
    for field in ("hostname", "machine_id", "authorized_keys", "host_public_key"):
        assert found["web"][field] != found["db"][field], field


def test_assembly_images_are_overlays_of_the_jeos(
    two_assemblies: dict[str, Made], jeos_record: jeos.JeosRecord
) -> None:
    for made in two_assemblies.values():
        info = qemu.image_info(made.image.path)
        assert info.backing_file == str(jeos_record.path.absolute())
        assert info.actual_size < 64 << 20  # only the changed blocks
    # the JEOS itself is untouched
    assert jeos.sha256_of(jeos_record.path) == jeos_record.checksum


def test_creating_an_existing_assembly_image_is_a_conflict(
    two_assemblies: dict[str, Made], jeos_record: jeos.JeosRecord, assemblies_dir: Path
) -> None:
    web = two_assemblies["web"]
    with pytest.raises(Conflict):
        customize.create_assembly_image(jeos_record, "web", web.uuid, web.keys, assemblies_dir)


def test_clone_full_copy_and_reset(
    two_assemblies: dict[str, Made],
    jeos_record: jeos.JeosRecord,
    assembly_keys: dict[str, AssemblyKeys],
    tmp_path: Path,
) -> None:
    require_guestfs()
    keys = assembly_keys["web2"]
    clone_uuid = uuid.uuid4().hex
    clone = customize.clone_assembly_image(
        two_assemblies["web"].image.path, "web2", clone_uuid, keys, tmp_path
    )
    assert qemu.image_info(clone).backing_file == str(jeos_record.path.absolute())
    found = customize.read_identity(clone)
    assert found["hostname"] == "web2\n" and found["machine_id"] == f"{clone_uuid}\n"
    assert found["authorized_keys"] == keys.public_key + "\n"
    assert found["host_public_key"] == keys.host_public_key + "\n"

    # a full copy, reset to another identity in place
    full = customize.create_assembly_image(
        jeos_record, "full", uuid.uuid4().hex, keys, tmp_path / "full", overlay=False
    )
    assert qemu.image_info(full.path).backing_file is None
    new_uuid = uuid.uuid4().hex
    db = two_assemblies["db"]
    customize.reset_assembly_image(full.path, "db", new_uuid, db.keys)
    found = customize.read_identity(full.path)
    assert found["machine_id"] == f"{new_uuid}\n"
    assert found["host_public_key"] == db.keys.host_public_key + "\n"


def test_image_without_an_operating_system_is_refused(
    tmp_path: Path, assembly_keys: dict[str, AssemblyKeys]
) -> None:
    require_guestfs()
    raw = tmp_path / "empty.raw"
    with raw.open("wb") as f:
        f.truncate(64 << 20)
    qemu.run_tool("mkfs.ext4", "-q", "-F", str(raw), timeout=60)
    record = jeos.import_jeos("blank", raw, tmp_path / "jeos")
    with pytest.raises(InvalidInput, match="no operating system"):
        customize.create_assembly_image(
            record, "web", uuid.uuid4().hex, assembly_keys["web"], tmp_path / "out"
        )
    assert not list((tmp_path / "out").glob("*"))
