"""JEOS commands: build or import, then register; never an image without a record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from foundation.errors import Conflict, InvalidInput, Unavailable
from pcloudsh.environment import Environment
from pcloudsh.testing import run
from tests.unit.inprocess import InProcessCped
from tests.unit.pcloudsh.fakes import FakeImages


def jeos_names(cped: InProcessCped) -> list[str]:
    return [jeos["name"] for jeos in cped.list_jeos()]


def test_create_builds_shows_progress_and_registers(
    env: Environment, cped: InProcessCped, images: FakeImages
) -> None:
    ran = run(env, "jeos_create base --release trixie --packages nginx,curl")
    assert ran.status == 0, ran
    assert ran.out == "JEOS base built (trixie, x86_64, 300.0 MiB): /images/base/disk.qcow2\n"
    assert images.calls == ["build base trixie x86_64 ['nginx', 'curl']"]
    assert cped.get_jeos("base") == {
        "name": "base",
        "kind": "image",
        "path": "/images/base/disk.qcow2",
        "size": 300 * 1024 * 1024,
        "checksum": "sha256:00",
        "release": "trixie",
        "arch": "x86_64",
        "created": 1_699_990_000.0,
    }
    lines = ran.err.splitlines()  # into a pipe: a line as each step starts and ends
    assert lines[0] == "pcloudsh: JEOS base: check..."
    assert lines[2] == "pcloudsh: JEOS base: debootstrap..."
    assert lines[3].startswith("pcloudsh: JEOS base: debootstrap done (")
    assert len(lines) == 6


def test_create_json_prints_the_record(env: Environment, images: FakeImages) -> None:
    ran = run(env, "--json jeos_create base")
    record = json.loads(ran.out)
    assert record["kernel"] == "/images/base/vmlinuz" and record["release"] == "bookworm"
    assert ran.err.startswith("pcloudsh: JEOS base: check...")  # progress stays on stderr


def test_an_existing_name_is_refused_before_building(
    env: Environment, cped: InProcessCped, images: FakeImages
) -> None:
    assert run(env, "jeos_create base").status == 0
    for line in ("jeos_create base", "jeos_create host", "jeos_import host /etc/hostname"):
        ran = run(env, line)
        assert ran.status == 2 and "already exists" in ran.err, line
    assert images.calls == ["build base bookworm x86_64 []"]


@pytest.mark.parametrize(
    "error", [KeyboardInterrupt(), InvalidInput("unknown Debian release 'sid'"), OSError("disk")]
)
def test_a_failed_or_interrupted_build_registers_nothing(
    env: Environment, cped: InProcessCped, images: FakeImages, error: BaseException
) -> None:
    images.fail = error if not isinstance(error, OSError) else Unavailable("disk full")
    ran = run(env, "jeos_create base")
    assert ran.status in (130, 2, 1)
    assert "create_jeos" not in cped.calls
    assert jeos_names(cped) == ["host"] and images.files == {}


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (KeyboardInterrupt(), 130),
        (Conflict("JEOS image 'base' already exists"), 2),
        (Unavailable("lost the connection to cped"), 1),
    ],
)
def test_an_image_cped_does_not_register_is_removed(
    env: Environment, cped: InProcessCped, images: FakeImages, error: BaseException, status: int
) -> None:
    cped.answer("create_jeos", answer=error)
    ran = run(env, "jeos_create base")
    assert ran.status == status
    assert images.files == {} and images.calls[-1] == "delete base"
    assert ran.out == ""


def test_an_image_registered_despite_a_lost_answer_is_kept(
    env: Environment, cped: InProcessCped, images: FakeImages
) -> None:
    real_create = cped.create_jeos

    def registered_then_lost(doc: dict[str, object]) -> dict[str, object]:
        real_create(doc)
        raise Unavailable("lost the connection to cped")

    cped.create_jeos = registered_then_lost  # type: ignore[method-assign]
    assert run(env, "jeos_create base").status == 1
    assert "base" in images.files and "base" in jeos_names(cped)


def test_import_passes_its_options(
    env: Environment, cped: InProcessCped, images: FakeImages, tmp_path: Path
) -> None:
    disk, kernel = tmp_path / "disk.qcow2", tmp_path / "vmlinuz"
    disk.write_bytes(b"QFI")
    kernel.write_bytes(b"k")
    ran = run(env, f"jeos_import cloud {disk} --release 12 --kernel {kernel} --cmdline quiet")
    assert ran.status == 0, ran
    assert ran.out.startswith("JEOS cloud imported (12, x86_64, 300.0 MiB): ")
    assert images.calls == [
        f"import cloud {disk} [('arch', 'x86_64'), ('cmdline', 'quiet'), "
        f"('kernel', PosixPath('{kernel}')), ('release', '12')]"
    ]
    assert cped.get_jeos("cloud")["release"] == "12"


def test_import_of_a_missing_file(env: Environment, images: FakeImages) -> None:
    ran = run(env, "jeos_import cloud /nonexistent/disk.qcow2")
    assert (ran.status, ran.err) == (2, "pcloudsh: error: /nonexistent/disk.qcow2: no such file\n")
    assert images.calls == []


def test_import_of_what_is_not_a_regular_file(
    env: Environment, images: FakeImages, tmp_path: Path
) -> None:
    for file, reason in ((tmp_path, "is a directory"), ("/dev/null", "not a regular file")):
        ran = run(env, f"jeos_import cloud {file}")
        assert (ran.status, ran.err) == (2, f"pcloudsh: error: {file}: {reason}\n")
    assert images.calls == []


def test_import_checks_its_boot_files_before_any_work(
    env: Environment, images: FakeImages, tmp_path: Path
) -> None:
    disk, kernel, empty = tmp_path / "disk.qcow2", tmp_path / "vmlinuz", tmp_path / "empty"
    disk.write_bytes(b"QFI")
    kernel.write_bytes(b"k")
    empty.write_bytes(b"")
    for options, message in (
        (f"--kernel {tmp_path}", f"{tmp_path}: is a directory"),
        ("--kernel /dev/null", "/dev/null: not a regular file"),
        (f"--kernel {tmp_path / 'absent'}", f"{tmp_path / 'absent'}: no such file"),
        (f"--kernel {empty}", f"--kernel {empty}: the file is empty"),
        (f"--kernel {kernel} --initrd {empty}", f"--initrd {empty}: the file is empty"),
        (f"--initrd {kernel}", "--initrd needs --kernel"),
        ("--cmdline quiet", "--cmdline needs --kernel"),
    ):
        ran = run(env, f"jeos_import cloud {disk} {options}")
        assert (ran.status, ran.out, ran.err) == (2, "", f"pcloudsh: error: {message}\n"), options
    assert images.calls == []


def test_delete_removes_the_record_then_the_files(
    env: Environment, cped: InProcessCped, images: FakeImages
) -> None:
    run(env, "jeos_create base")
    ran = run(env, "jeos_delete base")
    assert (ran.status, ran.out) == (0, "JEOS base deleted (its files removed)\n")
    assert jeos_names(cped) == ["host"] and images.files == {}
    cped.create_jeos({"name": "elsewhere", "path": "/x.qcow2"})
    ran = run(env, "--json jeos_delete elsewhere")
    assert json.loads(ran.out)["files_removed"] is False


def test_delete_is_refused_while_assemblies_use_the_image(
    env: Environment, cped: InProcessCped, images: FakeImages
) -> None:
    run(env, "jeos_create base")
    assert run(env, "assembly_create web base").status == 0
    ran = run(env, "jeos_delete base")
    assert ran.status == 2
    assert ran.err == (
        "pcloudsh: error: JEOS image 'base' is used by assemblies web: delete them first\n"
    )
    assert "base" in images.files and "base" in jeos_names(cped)
    ran = run(env, "jeos_delete host")
    assert ran.status == 2 and "cannot be deleted" in ran.err
    assert run(env, "jeos_delete nosuch").status == 2


def test_list_shows_sizes_and_ages(env: Environment, cped: InProcessCped) -> None:
    cped.create_jeos(
        {
            "name": "base",
            "path": "/images/base/disk.qcow2",
            "arch": "x86_64",
            "release": "bookworm",
            "size": 734_003_200,
            "created": 1_700_000_000.0 - 3 * 86400 - 7200,
        }
    )
    lines = run(env, "jeos_list").out.splitlines()
    assert lines[0].split() == ["Name", "Kind", "Arch", "Release", "Size", "Age"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert rows["base"] == ["image", "x86_64", "bookworm", "700.0", "MiB", "3", "d", "2", "h"]
    assert rows["host"][0] == "host" and rows["host"][-2:] == ["-", "-"]
    data = json.loads(run(env, "jeos_list --json").out)
    assert {j["name"]: j.get("size") for j in data} == {"host": None, "base": 734_003_200}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("jeos_create ../x", "invalid JEOS name '../x'"),
        ("jeos_create base --packages 'a b'", "invalid --packages: 'a b'"),
        ("jeos_delete 'a b'", "invalid JEOS name 'a b'"),
        ("jeos_import", "the following arguments are required: NAME, FILE"),
    ],
)
def test_bad_input(env: Environment, images: FakeImages, line: str, message: str) -> None:
    ran = run(env, line)
    assert ran.status == 2 and message in ran.err and ran.out == ""
    assert images.calls == []
