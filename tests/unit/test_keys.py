"""Assembly key pairs: the OpenSSH public line, the key directory layout and its modes."""

from __future__ import annotations

import base64
import stat
import struct
from pathlib import Path

import asyncssh
import pytest

from foundation.errors import InvalidInput
from foundation.keyfiles import key_paths, load_assembly_keys
from images import keys


@pytest.fixture(scope="module")
def pair() -> keys.KeyPair:
    return keys.generate_rsa_keypair(comment="root@test")


def _fields(blob: bytes) -> list[bytes]:
    out = []
    while blob:
        (length,) = struct.unpack(">I", blob[:4])
        out.append(blob[4 : 4 + length])
        blob = blob[4 + length :]
    return out


def test_mpint_encoding_follows_rfc4251() -> None:
    # The examples of RFC 4251 section 5 (non-negative ones).
    assert keys._mpint(0) == b"\x00\x00\x00\x00"
    assert keys._mpint(0x9A378F9B2E332A7) == bytes.fromhex("0000000809a378f9b2e332a7")
    assert keys._mpint(0x80) == bytes.fromhex("000000020080")


def test_public_line_has_type_blob_and_comment(pair: keys.KeyPair) -> None:
    kind, blob, comment = pair.public_line.split(" ")
    assert (kind, comment) == ("ssh-rsa", "root@test")
    name, e, n = _fields(base64.b64decode(blob))
    assert name == b"ssh-rsa"
    assert int.from_bytes(e, "big") == 65537
    assert n[0] == 0 and n[1] & 0x80  # a 2048-bit modulus needs the sign byte
    assert int.from_bytes(n, "big").bit_length() == 2048


def test_private_and_public_halves_match(pair: keys.KeyPair) -> None:
    private = asyncssh.import_private_key(pair.private_pem)
    expected = private.export_public_key("openssh").decode().split()[:2]
    assert pair.public_line.split()[:2] == expected
    assert keys.public_line_from_pem(pair.private_pem, "root@test") == pair.public_line


def test_new_keys_are_ecdsa_p256_with_the_openssh_public_line() -> None:
    made = keys.generate_keypair("host@web")
    kind, blob, comment = made.public_line.split(" ")
    assert (kind, comment) == ("ecdsa-sha2-nistp256", "host@web")
    name, curve, point = _fields(base64.b64decode(blob))
    assert (name, curve, len(point), point[0]) == (b"ecdsa-sha2-nistp256", b"nistp256", 65, 4)
    private = asyncssh.import_private_key(made.private_pem)
    assert private.export_public_key("openssh").decode().split()[:2] == [kind, blob]
    assert keys.public_line_from_pem(made.private_pem, "host@web") == made.public_line
    assert made.private_pem.startswith(b"-----BEGIN EC PRIVATE KEY-----\n")
    assert keys.generate_keypair().public_line != made.public_line


def test_many_assemblies_get_their_keys_and_left_overs_are_replaced(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    stale = keys.write_assembly_keys(keys_dir, "b")
    counts: list[int] = []
    keys.write_many_assembly_keys(keys_dir, ["a", "b", "c"], counts.append)
    assert counts == [1, 2, 3]
    made = {name: load_assembly_keys(keys_dir, name) for name in "abc"}
    assert made["b"].public_key != stale.public_key
    assert (
        len({k.public_key for k in made.values()} | {k.host_public_key for k in made.values()}) == 6
    )
    for name in "abc":
        private, _public, host_private, _host_public = key_paths(keys_dir, name)
        assert {stat.S_IMODE(p.stat().st_mode) for p in (private, host_private)} == {0o600}


def test_deleting_keys_removes_temporaries_of_theirs_only(tmp_path: Path) -> None:
    keys.write_assembly_keys(tmp_path, "web")
    keys.write_assembly_keys(tmp_path, "web.1")
    (tmp_path / ".web.pub.ab_12xyz").write_bytes(b"")  # an interrupted write of web's
    (tmp_path / ".web.1.ab_12xyz").write_bytes(b"")  # of web.1's
    keys.delete_assembly_keys(tmp_path, "web")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".web.1.ab_12xyz",
        "web.1",
        "web.1.host",
        "web.1.host.pub",
        "web.1.pub",
    ]


def test_many_assemblies_interrupted_leave_no_key_files(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"

    def interrupt_at_the_third(count: int) -> None:
        if count == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        keys.write_many_assembly_keys(keys_dir, ["a", "b", "c", "d"], interrupt_at_the_third)
    assert list(keys_dir.iterdir()) == []


def test_private_key_is_unencrypted_traditional_pem(pair: keys.KeyPair) -> None:
    assert pair.private_pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----\n")
    assert b"ENCRYPTED" not in pair.private_pem


def test_two_pairs_differ() -> None:
    a, b = keys.generate_rsa_keypair(), keys.generate_rsa_keypair()
    assert a.public_line != b.public_line
    assert a.private_pem != b.private_pem


@pytest.mark.parametrize("bits", [1024, 2049, 0])
def test_weak_or_odd_key_sizes_are_refused(bits: int) -> None:
    with pytest.raises(InvalidInput, match="key size"):
        keys.generate_rsa_keypair(bits)


def test_multiline_comment_is_refused() -> None:
    with pytest.raises(InvalidInput, match="single line"):
        keys.generate_rsa_keypair(comment="a\nb")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_assembly_keys_layout_and_modes(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    result = keys.write_assembly_keys(keys_dir, "web")
    private, public, host_private, host_public = key_paths(keys_dir, "web")
    assert _mode(keys_dir) == 0o700
    assert [_mode(p) for p in (private, public, host_private, host_public)] == [
        0o600,
        0o644,
        0o600,
        0o644,
    ]
    assert result == load_assembly_keys(keys_dir, "web")
    assert result.public_key == keys.public_line_from_pem(private.read_bytes(), "root@web")
    assert result.host_public_key == keys.public_line_from_pem(
        host_private.read_bytes(), "host@web"
    )
    assert result.public_key != result.host_public_key
    assert sorted(p.name for p in keys_dir.iterdir()) == [
        "web",
        "web.host",
        "web.host.pub",
        "web.pub",
    ]


def test_existing_pair_is_kept_unless_overwrite(tmp_path: Path) -> None:
    first = keys.write_assembly_keys(tmp_path, "db")
    assert keys.write_assembly_keys(tmp_path, "db") == first
    again = keys.write_assembly_keys(tmp_path, "db", overwrite=True)
    assert again.public_key != first.public_key
    assert again.host_public_key != first.host_public_key


@pytest.mark.parametrize("missing", [0, 1, 2, 3])
def test_half_pair_is_regenerated(tmp_path: Path, missing: int) -> None:
    first = keys.write_assembly_keys(tmp_path, "db")
    key_paths(tmp_path, "db")[missing].unlink()
    again = keys.write_assembly_keys(tmp_path, "db")
    login_changed = again.public_key != first.public_key
    host_changed = again.host_public_key != first.host_public_key
    assert (login_changed, host_changed) == ((True, False) if missing < 2 else (False, True))
    private = key_paths(tmp_path, "db")[0 if missing < 2 else 2]
    comment = "root@db" if missing < 2 else "host@db"
    public = again.public_key if missing < 2 else again.host_public_key
    assert keys.public_line_from_pem(private.read_bytes(), comment) == public


def test_two_assemblies_never_share_a_key(tmp_path: Path) -> None:
    a = keys.write_assembly_keys(tmp_path, "a")
    b = keys.write_assembly_keys(tmp_path, "b")
    lines = {a.public_key, a.host_public_key, b.public_key, b.host_public_key}
    assert len(lines) == 4
    assert a.private_key.read_bytes() != b.private_key.read_bytes()


def test_no_temporary_files_are_left(tmp_path: Path) -> None:
    keys.write_assembly_keys(tmp_path, "a")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_delete_is_idempotent_and_only_touches_its_assembly(tmp_path: Path) -> None:
    keys.write_assembly_keys(tmp_path, "a")
    keys.write_assembly_keys(tmp_path, "ab")
    keys.delete_assembly_keys(tmp_path, "a")
    keys.delete_assembly_keys(tmp_path, "a")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ab", "ab.host", "ab.host.pub", "ab.pub"]


@pytest.mark.parametrize("name", ["", "../etc", "a/b", "-x", "x" * 64, ".hidden"])
def test_bad_assembly_names_are_refused_before_writing(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidInput):
        keys.write_assembly_keys(tmp_path / "keys", name)
    with pytest.raises(InvalidInput):
        keys.delete_assembly_keys(tmp_path / "keys", name)
    assert not (tmp_path / "keys").exists()


def test_keys_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "keys").write_text("")
    with pytest.raises(InvalidInput, match="not a directory"):
        keys.write_assembly_keys(tmp_path / "keys", "a")
