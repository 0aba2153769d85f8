"""Assemblies of an image JEOS get a disk; a failure leaves neither disk, keys nor record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from foundation.errors import Conflict, InvalidInput, NotFound
from foundation.paths import Paths
from pcloudsh.environment import Environment
from pcloudsh.imagestore import AssemblyDisks
from pcloudsh.testing import run
from tests.unit.inprocess import InProcessCped
from tests.unit.pcloudsh.fakes import FakeDisks, FakeKeys

IMAGE_JEOS = {"name": "base", "path": "/images/base/disk.qcow2", "arch": "x86_64"}


def assembly_names(cped: InProcessCped) -> list[str]:
    return [a["name"] for a in cped.list_assemblies()]


@pytest.fixture
def base(cped: InProcessCped) -> InProcessCped:
    cped.create_jeos(IMAGE_JEOS)
    return cped


def test_create_builds_an_overlay_disk_with_progress(
    env: Environment, base: InProcessCped, keys: FakeKeys, disks: FakeDisks
) -> None:
    ran = run(env, "--json assembly_create web base")
    assert ran.status == 0, ran
    data = json.loads(ran.out)
    assert data["disk"] == "/images/assemblies/web.qcow2" and data["overlay"] is True
    assert disks.calls == ["create web base overlay"]
    assert disks.files["web"]["machine_id"] == base.get_assembly("web")["uuid"] == data["uuid"]
    assert keys.made == {"web"}
    lines = ran.err.splitlines()  # into a pipe: a line as each step starts and ends
    assert lines[0] == "pcloudsh: assembly web: copy..."
    assert lines[2] == "pcloudsh: assembly web: customize..."
    assert len(lines) == 4


def test_full_copy_and_the_message(env: Environment, base: InProcessCped, disks: FakeDisks) -> None:
    ran = run(env, "assembly_create web base --full-copy")
    assert ran.status == 0, ran
    assert ran.out == (
        "assembly web created from base (disk /images/assemblies/web.qcow2, full copy)\n"
    )
    assert disks.calls == ["create web base full"]


def test_host_assemblies_get_no_disk(
    env: Environment, cped: InProcessCped, disks: FakeDisks
) -> None:
    ran = run(env, "assembly_create web host")
    assert (ran.status, ran.out, ran.err) == (0, "assembly web created from host\n", "")
    assert disks.calls == []


@pytest.mark.parametrize("error", [KeyboardInterrupt(), InvalidInput("no JEOS files"), OSError()])
def test_a_failed_or_interrupted_disk_leaves_nothing(
    env: Environment, base: InProcessCped, keys: FakeKeys, disks: FakeDisks, error: BaseException
) -> None:
    disks.fail = error
    if isinstance(error, OSError):  # not a pcloudsh error: it propagates, as for keys
        with pytest.raises(OSError):
            run(env, "assembly_create web base")
    else:
        ran = run(env, "assembly_create web base")
        assert ran.status == (130 if isinstance(error, KeyboardInterrupt) else 2), ran
    assert disks.files == {} and keys.made == set()
    assert assembly_names(base) == [] and "create_assembly" not in base.calls


@pytest.mark.parametrize("error", [KeyboardInterrupt(), Conflict("refused")])
def test_a_refused_or_interrupted_registration_removes_disk_and_keys(
    env: Environment, base: InProcessCped, keys: FakeKeys, disks: FakeDisks, error: BaseException
) -> None:
    def refuse(doc: dict[str, object]) -> None:
        raise error

    base.create_assembly = refuse  # type: ignore[method-assign,assignment]
    status = 2 if isinstance(error, Conflict) else 130
    assert run(env, "assembly_create web base").status == status
    assert disks.calls == ["create web base overlay", "delete web"]
    assert disks.files == {} and keys.made == set()


def test_an_existing_assembly_is_refused_before_any_disk(
    env: Environment, base: InProcessCped, keys: FakeKeys, disks: FakeDisks
) -> None:
    assert run(env, "assembly_create web base").status == 0
    ran = run(env, "assembly_create web base")
    assert ran.status == 2 and "already exists" in ran.err
    assert disks.calls == ["create web base overlay"] and "web" in disks.files
    assert keys.made == {"web"}


def test_clone_makes_a_new_disk_from_the_jeos(
    env: Environment, base: InProcessCped, keys: FakeKeys, disks: FakeDisks
) -> None:
    run(env, "assembly_create web base")
    ran = run(env, "--json assembly_clone web web2")
    assert ran.status == 0, ran
    data = json.loads(ran.out)
    assert data["disk"] == "/images/assemblies/web2.qcow2"
    assert disks.calls[-1] == "create web2 base overlay"
    assert disks.files["web2"]["machine_id"] == data["uuid"] != base.get_assembly("web")["uuid"]
    assert keys.made == {"web", "web2"}


def test_a_failed_clone_leaves_nothing(
    env: Environment, base: InProcessCped, keys: FakeKeys, disks: FakeDisks
) -> None:
    run(env, "assembly_create web base")
    disks.fail = OSError("no space")
    with pytest.raises(OSError):
        run(env, "assembly_clone web web2")
    assert set(disks.files) == {"web"} and keys.made == {"web"}
    assert assembly_names(base) == ["web"]


def test_delete_removes_the_disk(
    env: Environment, base: InProcessCped, keys: FakeKeys, disks: FakeDisks
) -> None:
    run(env, "assembly_create web base")
    ran = run(env, "--json assembly_delete web")
    assert ran.status == 0, ran
    assert json.loads(ran.out)["disk_removed"] is True
    assert disks.files == {} and keys.made == set() and assembly_names(base) == []


def test_a_refused_delete_keeps_the_disk(
    env: Environment, base: InProcessCped, keys: FakeKeys, disks: FakeDisks
) -> None:
    run(env, "assembly_create web base")
    run(env, "deployable_create shop")
    run(env, "deployable_assembly_add shop web")
    assert run(env, "assembly_delete web").status == 2
    assert "web" in disks.files and keys.made == {"web"}


def test_the_disk_adapter_refuses_a_jeos_without_files(tmp_path: Path) -> None:
    paths = Paths(tmp_path / "etc", tmp_path / "state", tmp_path / "run")
    store = AssemblyDisks(paths)
    with pytest.raises(NotFound, match="JEOS 'base' does not exist"):
        store.create("web", "0" * 32, "base", True, lambda _phase, _fraction: None)
    assert not store.path("web").exists()
    assert store.delete("web") is False
    store.path("web").parent.mkdir(parents=True)
    store.path("web").write_bytes(b"qcow2")
    assert store.delete("web") is True and not store.path("web").exists()
