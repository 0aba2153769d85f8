"""jeos_import: what qemu-img says decides; corrupt or missing images get clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from foundation.errors import Conflict, InvalidInput
from images import jeos, qemu

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img not installed"),
]


def _raw(path: Path, size: int = 64 << 20) -> Path:
    with path.open("wb") as f:
        f.truncate(size)
        f.seek(0)
        f.write(b"some data")
    return path


def test_import_raw_becomes_qcow2(tmp_path: Path) -> None:
    record = jeos.import_jeos("cloud", _raw(tmp_path / "cloud.raw"), tmp_path / "jeos")
    info = qemu.image_info(record.path)
    assert (info.format, info.virtual_size) == ("qcow2", 64 << 20)
    assert record.checksum == jeos.sha256_of(record.path)
    assert (record.kernel, record.initrd, record.build_log) == (None, None, None)
    assert jeos.load_jeos(tmp_path / "jeos", "cloud") == record
    assert [p.name for p in (tmp_path / "jeos").iterdir()] == ["cloud"]


def test_import_qcow2_with_a_backing_file_is_flattened(tmp_path: Path) -> None:
    base = tmp_path / "base.qcow2"
    qemu.convert_to_qcow2(_raw(tmp_path / "b.raw"), base, "raw")
    overlay = tmp_path / "overlay.qcow2"
    qemu.create_overlay(base, overlay)
    record = jeos.import_jeos("flat", overlay, tmp_path / "jeos", kernel=base, cmdline="x")
    assert qemu.image_info(record.path).backing_file is None
    assert record.kernel is not None and record.kernel.is_file()


def test_import_existing_name_is_a_conflict(tmp_path: Path) -> None:
    jeos.import_jeos("cloud", _raw(tmp_path / "a.raw"), tmp_path / "jeos")
    with pytest.raises(Conflict):
        jeos.import_jeos("cloud", _raw(tmp_path / "b.raw"), tmp_path / "jeos")


def test_corrupt_qcow2_is_refused(tmp_path: Path) -> None:
    image = tmp_path / "bad.qcow2"
    qemu.convert_to_qcow2(_raw(tmp_path / "a.raw"), image, "raw")
    data = bytearray(image.read_bytes())
    data[40:48] = (1 << 62).to_bytes(8, "big")  # the L1 table offset, far past the end
    image.write_bytes(bytes(data))
    with pytest.raises(InvalidInput, match=r"bad\.qcow2"):
        jeos.import_jeos("bad", image, tmp_path / "jeos")
    assert not (tmp_path / "jeos").exists()


def test_truncated_qcow2_is_refused(tmp_path: Path) -> None:
    image = tmp_path / "short.qcow2"
    qemu.convert_to_qcow2(_raw(tmp_path / "a.raw"), image, "raw")
    image.write_bytes(image.read_bytes()[:300])
    with pytest.raises(InvalidInput, match=r"short\.qcow2"):
        jeos.import_jeos("short", image, tmp_path / "jeos")


def test_other_formats_and_empty_files_are_refused(tmp_path: Path) -> None:
    vmdk = tmp_path / "disk.vmdk"
    qemu.run_tool("qemu-img", "create", "-q", "-f", "vmdk", str(vmdk), "16M", timeout=30)
    with pytest.raises(InvalidInput, match="format 'vmdk'; supported: qcow2, raw"):
        jeos.import_jeos("vm", vmdk, tmp_path / "jeos")
    (tmp_path / "empty.img").write_bytes(b"")
    with pytest.raises(InvalidInput, match="is empty"):
        jeos.import_jeos("empty", tmp_path / "empty.img", tmp_path / "jeos")
    assert not (tmp_path / "jeos").exists()


def test_a_file_too_small_to_be_a_disk_is_refused(tmp_path: Path) -> None:
    """qemu-img takes any file for a raw disk: a text file must not become a JEOS."""
    (tmp_path / "text.img").write_text("hello\n")
    with pytest.raises(
        InvalidInput, match=r"text\.img is too small .*, at least 1 MiB\): is it a disk image"
    ):
        jeos.import_jeos("text", tmp_path / "text.img", tmp_path / "jeos")
    assert not (tmp_path / "jeos").exists()
    record = jeos.import_jeos("mib", _raw(tmp_path / "mib.raw", 1 << 20), tmp_path / "jeos")
    assert record.virtual_size == 1 << 20
