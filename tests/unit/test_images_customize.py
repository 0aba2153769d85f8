"""Assembly identity edits, on a directory standing in for the guest (no libguestfs)."""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from foundation.errors import Conflict, InvalidInput, NotFound
from foundation.keyfiles import AssemblyKeys
from images import customize, keys
from images.jeos import JeosRecord


class DirGuest:
    """``GuestFiles`` on a plain directory: the guest's / is ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _p(self, path: str) -> Path:
        assert path.startswith("/")
        return self.root / path.lstrip("/")

    def read(self, path: str) -> bytes | None:
        p = self._p(path)
        return p.read_bytes() if p.is_file() else None

    def write(self, path: str, data: bytes, mode: int) -> None:
        p = self._p(path)
        if p.is_symlink():
            p.unlink()
        p.write_bytes(data)
        p.chmod(mode)

    def mkdir(self, path: str, mode: int) -> None:
        p = self._p(path)
        p.mkdir(parents=True, exist_ok=True)
        p.chmod(mode)

    def remove(self, path: str) -> None:
        self._p(path).unlink(missing_ok=True)

    def glob(self, pattern: str) -> list[str]:
        return sorted(
            "/" + str(p.relative_to(self.root)) for p in self.root.glob(pattern.lstrip("/"))
        )

    def symlink(self, target: str, path: str) -> None:
        self._p(path).symlink_to(target)

    def is_dir(self, path: str) -> bool:
        return self._p(path).is_dir()


@pytest.fixture(scope="module")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")


@pytest.fixture(scope="module")
def web_keys(keys_dir: Path) -> AssemblyKeys:
    return keys.write_assembly_keys(keys_dir, "web")


@pytest.fixture(scope="module")
def db_keys(keys_dir: Path) -> AssemblyKeys:
    return keys.write_assembly_keys(keys_dir, "db")


@pytest.fixture
def guest(tmp_path: Path) -> DirGuest:
    root = tmp_path / "guest"
    for d in ("etc/ssh/sshd_config.d", "var/lib/dbus", "root", "etc/udev/rules.d"):
        (root / d).mkdir(parents=True)
    (root / "etc/hosts").write_text(
        "127.0.0.1\tlocalhost\n127.0.1.1\tjeos\n\n# IPv6\n::1\t\tlocalhost ip6-localhost\n"
    )
    (root / "etc/machine-id").write_text("")
    (root / "var/lib/dbus/machine-id").write_text("11111111111111111111111111111111\n")
    for name in ("ssh_host_rsa_key", "ssh_host_ecdsa_key", "ssh_host_ecdsa_key.pub"):
        (root / "etc/ssh" / name).write_text("old\n")
    (root / "etc/ssh/sshd_config.d/pacemaker-cloud.conf").write_text(
        "HostKey /etc/ssh/ssh_host_rsa_key\n"
    )
    (root / "etc/udev/rules.d/70-persistent-net.rules").write_text("SUBSYSTEM==net\n")
    (root / "root/.bashrc").write_text('eval "$(pyenv init -)"\n')
    return DirGuest(root)


UUID = "6f1c2e1c-58a7-4ad3-9b5f-2f0c3c1d9e0a"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_identity_is_written(guest: DirGuest, web_keys: AssemblyKeys) -> None:
    ident = customize.Identity.for_assembly("web", UUID, web_keys)
    customize.apply_identity(guest, ident)
    root = guest.root
    assert (root / "etc/hostname").read_text() == "web\n"
    assert (root / "etc/machine-id").read_text() == "6f1c2e1c58a74ad39b5f2f0c3c1d9e0a\n"
    assert os.readlink(root / "var/lib/dbus/machine-id") == "/etc/machine-id"
    assert (root / "root/.ssh/authorized_keys").read_text() == web_keys.public_key + "\n"
    assert _mode(root / "root/.ssh") == 0o700
    assert _mode(root / "root/.ssh/authorized_keys") == 0o600
    assert (
        root / "etc/ssh/ssh_host_rsa_key"
    ).read_bytes() == web_keys.host_private_key.read_bytes()
    assert _mode(root / "etc/ssh/ssh_host_rsa_key") == 0o600
    assert (root / "etc/ssh/ssh_host_rsa_key.pub").read_text() == web_keys.host_public_key + "\n"
    assert guest.glob("/etc/ssh/ssh_host_*") == [
        "/etc/ssh/ssh_host_rsa_key",
        "/etc/ssh/ssh_host_rsa_key.pub",
    ]
    assert not (root / "etc/udev/rules.d/70-persistent-net.rules").exists()
    assert "pyenv" not in (root / "root/.bashrc").read_text()


def test_hosts_keeps_other_lines_and_never_doubles_newlines(
    guest: DirGuest, web_keys: AssemblyKeys
) -> None:
    ident = customize.Identity.for_assembly("web", UUID, web_keys)
    customize.apply_identity(guest, ident)
    hosts = (guest.root / "etc/hosts").read_text()
    assert hosts == (
        "127.0.0.1\tlocalhost\n127.0.1.1\tweb\n\n# IPv6\n::1\t\tlocalhost ip6-localhost\n"
    )


def test_applying_twice_changes_nothing(guest: DirGuest, web_keys: AssemblyKeys) -> None:
    ident = customize.Identity.for_assembly("web", UUID, web_keys)
    customize.apply_identity(guest, ident)
    first = _snapshot(guest.root)
    customize.apply_identity(guest, ident)
    assert _snapshot(guest.root) == first


def test_reset_to_another_assembly_leaves_nothing_of_the_first(
    guest: DirGuest, web_keys: AssemblyKeys, db_keys: AssemblyKeys
) -> None:
    customize.apply_identity(guest, customize.Identity.for_assembly("web", UUID, web_keys))
    other = str(uuid.uuid4())
    customize.apply_identity(guest, customize.Identity.for_assembly("db", other, db_keys))
    text = "".join(p.read_text(errors="replace") for p in guest.root.rglob("*") if p.is_file())
    assert web_keys.public_key.split()[1] not in text
    assert web_keys.host_public_key.split()[1] not in text
    assert "6f1c2e1c58a74ad39b5f2f0c3c1d9e0a" not in text
    assert "\tweb\n" not in text
    assert (guest.root / "etc/machine-id").read_text() == uuid.UUID(other).hex + "\n"


def test_imported_image_gets_the_host_key_pinned_and_cloud_init_told(
    tmp_path: Path, web_keys: AssemblyKeys
) -> None:
    root = tmp_path / "cloud"
    (root / "etc/cloud/cloud.cfg.d").mkdir(parents=True)
    (root / "etc/ssh").mkdir()
    guest = DirGuest(root)
    customize.apply_identity(guest, customize.Identity.for_assembly("web", UUID, web_keys))
    assert (root / "etc/ssh/sshd_config.d/pacemaker-cloud.conf").read_text() == (
        "HostKey /etc/ssh/ssh_host_rsa_key\n"
    )
    assert (
        "ssh_deletekeys: false"
        in (root / "etc/cloud/cloud.cfg.d/90-pacemaker-cloud.cfg").read_text()
    )
    assert (root / "etc/hosts").read_text() == "127.0.0.1\tlocalhost\n127.0.1.1\tweb\n"


def test_image_without_sshd_is_refused(tmp_path: Path, web_keys: AssemblyKeys) -> None:
    (tmp_path / "bare/etc").mkdir(parents=True)
    with pytest.raises(InvalidInput, match="no /etc/ssh"):
        customize.apply_identity(
            DirGuest(tmp_path / "bare"), customize.Identity.for_assembly("web", UUID, web_keys)
        )


def _snapshot(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            out[key] = "-> " + os.readlink(path)
        elif path.is_file():
            out[key] = f"{_mode(path):o} {path.read_bytes()!r}"
    return out


# -- input checks -------------------------------------------------------


@pytest.mark.parametrize("bad", ["", "not-a-uuid", "00000000-0000-0000-0000-000000000000", "123"])
def test_bad_uuid(bad: str, web_keys: AssemblyKeys) -> None:
    with pytest.raises(InvalidInput, match="uuid"):
        customize.Identity.for_assembly("web", bad, web_keys)


def test_uuid_without_dashes_is_accepted(web_keys: AssemblyKeys) -> None:
    ident = customize.Identity.for_assembly("web", "6f1c2e1c58a74ad39b5f2f0c3c1d9e0a", web_keys)
    assert ident.machine_id == "6f1c2e1c58a74ad39b5f2f0c3c1d9e0a"


def test_bad_assembly_name(web_keys: AssemblyKeys) -> None:
    with pytest.raises(InvalidInput, match="assembly name"):
        customize.Identity.for_assembly("a b", UUID, web_keys)


def test_bad_public_key_line(web_keys: AssemblyKeys) -> None:
    broken = AssemblyKeys(
        web_keys.private_key, "not a key", web_keys.host_private_key, web_keys.host_public_key
    )
    with pytest.raises(InvalidInput, match="public key is not one OpenSSH"):
        customize.Identity.for_assembly("web", UUID, broken)


@pytest.mark.parametrize("make", [keys.generate_keypair, keys.generate_rsa_keypair])
def test_ecdsa_keys_and_rsa_keys_of_older_assemblies_are_written(
    make: Callable[[], keys.KeyPair], guest: DirGuest, tmp_path: Path
) -> None:
    login, host = make(), make()
    files = {}
    for name, pair in (("login", login), ("host", host)):
        files[name] = tmp_path / name
        files[name].write_bytes(pair.private_pem)
    made = AssemblyKeys(files["login"], login.public_line, files["host"], host.public_line)
    customize.apply_identity(guest, customize.Identity.for_assembly("web", UUID, made))
    ssh = guest.root / "etc/ssh"
    assert (ssh / "ssh_host_rsa_key").read_bytes() == host.private_pem  # the path sshd pins
    assert (ssh / "ssh_host_rsa_key.pub").read_text() == host.public_line + "\n"
    assert (guest.root / "root/.ssh/authorized_keys").read_text() == login.public_line + "\n"


def test_missing_host_key_file(web_keys: AssemblyKeys, tmp_path: Path) -> None:
    broken = AssemblyKeys(
        web_keys.private_key, web_keys.public_key, tmp_path / "gone", web_keys.host_public_key
    )
    with pytest.raises(NotFound, match="host key of assembly 'web'"):
        customize.Identity.for_assembly("web", UUID, broken)


@pytest.mark.parametrize(
    ("name", "host"), [("web", "web"), ("Web_1", "Web-1"), ("db.a", "db.a"), ("x_", "x")]
)
def test_hostname_for(name: str, host: str) -> None:
    assert customize.hostname_for(name) == host


def test_existing_assembly_image_is_a_conflict_before_any_work(
    tmp_path: Path, web_keys: AssemblyKeys
) -> None:
    out = tmp_path / "assemblies"
    out.mkdir()
    (out / "web.qcow2").write_bytes(b"")
    record = JeosRecord(
        name="base", path=tmp_path / "missing.qcow2", kernel=None, initrd=None, cmdline=None,
        size=0, virtual_size=0, checksum="", build_log=None, release="bookworm",
        arch="x86_64", created=0.0,
    )  # fmt: skip
    with pytest.raises(Conflict, match="already has a disk image"):
        customize.create_assembly_image(record, "web", UUID, web_keys, out)
    assert sorted(p.name for p in out.iterdir()) == ["web.qcow2"]


def test_missing_jeos_disk_is_refused(tmp_path: Path, web_keys: AssemblyKeys) -> None:
    record = JeosRecord(
        name="base", path=tmp_path / "missing.qcow2", kernel=None, initrd=None, cmdline=None,
        size=0, virtual_size=0, checksum="", build_log=None, release="bookworm",
        arch="x86_64", created=0.0,
    )  # fmt: skip
    with pytest.raises(InvalidInput, match="does not exist"):
        customize.create_assembly_image(record, "web", UUID, web_keys, tmp_path / "out")
    assert not (tmp_path / "out").exists()
