"""JEOS build and import refuse bad input before writing anything."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from foundation.errors import Conflict, InvalidInput, NotFound, PcloudError
from images import jeos

SOURCES = "Types: deb\nURIs: http://m.example/debian\nSuites: bookworm\nComponents: main\n"


@pytest.fixture
def apt_dir(tmp_path: Path) -> Path:
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list.d/debian.sources").write_text(SOURCES)
    return apt


def _refused(out_dir: Path, apt_dir: Path, match: str, **kwargs: object) -> None:
    args: dict[str, object] = {"name": "base", "out_dir": out_dir, "apt_dir": apt_dir}
    args.update(kwargs)
    with pytest.raises((InvalidInput, Conflict), match=match):
        jeos.build_jeos(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "no/slash"}, "invalid JEOS name"),
        ({"name": ""}, "invalid JEOS name"),
        ({"release": "jessie"}, "unknown Debian release 'jessie'"),
        ({"release": "F16"}, "unknown Debian release"),
        ({"arch": "aarch64"}, "unsupported architecture 'aarch64'"),
        ({"arch": "i386"}, "unsupported architecture"),
        ({"packages": ["vim", "Bad_Name"]}, "invalid Debian package name.*Bad_Name"),
        ({"packages": ["-o"]}, "invalid Debian package name"),
        ({"packages": "vim"}, "list of package names"),
        ({"disk_size": 1 << 20}, "disk size"),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(
    tmp_path: Path, apt_dir: Path, kwargs: dict[str, object], match: str
) -> None:
    out_dir = tmp_path / "images"
    _refused(out_dir, apt_dir, match, **kwargs)
    assert not out_dir.exists()


def test_no_mirror_in_the_host_sources(tmp_path: Path) -> None:
    out_dir = tmp_path / "images"
    _refused(out_dir, tmp_path / "no-apt", "no Debian mirror")
    assert not out_dir.exists()


def test_existing_jeos_is_a_conflict(tmp_path: Path, apt_dir: Path) -> None:
    (tmp_path / "images/base").mkdir(parents=True)
    with pytest.raises(Conflict, match="already exists"):
        jeos.build_jeos("base", out_dir=tmp_path / "images", apt_dir=apt_dir)


def test_out_dir_that_is_a_file(tmp_path: Path, apt_dir: Path) -> None:
    (tmp_path / "images").write_text("")
    _refused(tmp_path / "images", apt_dir, "not a directory")


def test_not_enough_disk_space(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"not enough disk space.*GiB needed"):
        jeos.check_out_dir(tmp_path / "images", "base", min_free=1 << 62)
    assert not (tmp_path / "images").exists()


def test_no_permission_to_write(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root may write anywhere")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(InvalidInput, match="no permission"):
        jeos.check_out_dir(locked / "images", "base", min_free=0)


def test_building_needs_root() -> None:
    with pytest.raises(InvalidInput, match="needs root"):
        jeos.check_root(euid=1000)
    jeos.check_root(euid=0)


def test_missing_tools_are_named_with_their_package() -> None:
    with pytest.raises(Exception, match=r"no-such-tool-x \(Debian package pkg-x\)"):
        jeos.check_tools([("no-such-tool-x", "pkg-x")])


def test_release_without_a_debootstrap_script(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="cannot build 'trixie'"):
        jeos.check_release("trixie", scripts=tmp_path)


def test_base_packages_come_first_without_duplicates(tmp_path: Path, apt_dir: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("plan_build checks for root")
    try:
        plan = jeos.plan_build(
            "base", "bookworm", "x86_64", ["dbus", "vim"], tmp_path, apt_dir=apt_dir
        )
    except PcloudError as exc:  # a machine without debootstrap or with little disk space
        pytest.skip(str(exc))
    assert plan.packages == (*jeos.BASE_PACKAGES, "vim")
    assert plan.deb_arch == "amd64"
    assert plan.mirror.uri == "http://m.example/debian"
    assert list(tmp_path.iterdir()) == [apt_dir]


# -- import -------------------------------------------------------------


def test_import_of_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        jeos.import_jeos("cloud", tmp_path / "nope.qcow2", tmp_path / "images")
    assert not (tmp_path / "images").exists()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "../x"}, "invalid JEOS name"),
        ({"arch": "ppc64"}, "unsupported architecture"),
        ({"kernel": Path("/nonexistent/vmlinuz")}, r"kernel .* does not exist"),
    ],
)
def test_import_bad_arguments(tmp_path: Path, kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {"name": "cloud", "file": tmp_path / "x", "out_dir": tmp_path / "i"}
    args.update(kwargs)
    with pytest.raises(InvalidInput, match=match):
        jeos.import_jeos(**args)  # type: ignore[arg-type]
    assert not (tmp_path / "i").exists()


def test_initrd_needs_a_kernel(tmp_path: Path) -> None:
    initrd = tmp_path / "initrd"
    initrd.write_bytes(b"x")
    with pytest.raises(InvalidInput, match="initrd needs a kernel"):
        jeos.import_jeos("cloud", tmp_path / "x", tmp_path / "i", initrd=initrd)


# -- records ---------------------------------------------------------


def _record(out_dir: Path, name: str) -> jeos.JeosRecord:
    return jeos.JeosRecord(
        name=name,
        path=out_dir / name / "disk.qcow2",
        kernel=out_dir / name / "vmlinuz",
        initrd=None,
        cmdline="console=ttyS0",
        size=10,
        virtual_size=20,
        checksum="sha256:00",
        build_log=None,
        release="bookworm",
        arch="x86_64",
        created=1.5,
    )


def test_record_round_trips_through_json(tmp_path: Path) -> None:
    record = _record(tmp_path, "base")
    (tmp_path / "base").mkdir()
    (tmp_path / "base/jeos.json").write_text(json.dumps(record.to_dict()))
    assert jeos.load_jeos(tmp_path, "base") == record
    assert jeos.list_jeos(tmp_path) == [record]
    assert record.to_dict()["kind"] == "image"


def test_load_and_delete_unknown_jeos(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="'ghost' does not exist"):
        jeos.load_jeos(tmp_path, "ghost")
    with pytest.raises(NotFound):
        jeos.delete_jeos(tmp_path, "ghost")
    assert jeos.list_jeos(tmp_path / "none") == []


def test_delete_removes_the_directory(tmp_path: Path) -> None:
    record = _record(tmp_path, "base")
    (tmp_path / "base").mkdir()
    (tmp_path / "base/jeos.json").write_text(json.dumps(record.to_dict()))
    jeos.delete_jeos(tmp_path, "base")
    assert not (tmp_path / "base").exists()


def test_sha256_of(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abc")
    assert jeos.sha256_of(tmp_path / "f") == (
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_abandoned_work_directories_are_removed(tmp_path: Path) -> None:
    dead = tmp_path / ".base.work-dead"
    (dead / "root/etc").mkdir(parents=True)
    (dead / jeos.OWNER).write_text("999999999\n")  # beyond pid_max: never alive
    no_owner = tmp_path / ".other.work-x"
    no_owner.mkdir()
    alive = tmp_path / ".web.work-live"
    alive.mkdir()
    (alive / jeos.OWNER).write_text(f"{os.getpid()}\n")
    finished = tmp_path / "base"
    finished.mkdir()
    removed = jeos.remove_abandoned_work(tmp_path)
    assert sorted(removed) == sorted([dead, no_owner])
    assert sorted(p.name for p in tmp_path.iterdir()) == [".web.work-live", "base"]
