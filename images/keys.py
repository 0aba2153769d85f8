"""SSH key pairs for assemblies, made with M2Crypto.

Each assembly gets two RSA pairs: root's login key and the SSH host key its
instances present (the engine pins the host key's public line).  M2Crypto
writes PEM but knows nothing of OpenSSH's public format, so the
``ssh-rsa AAAA... comment`` line is assembled here from e and n in SSH wire
format (RFC 4251 strings and mpints).
"""

from __future__ import annotations

import base64
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from M2Crypto import BIO, RSA

from foundation.errors import Forbidden, InvalidInput
from foundation.keyfiles import AssemblyKeys, key_paths, load_assembly_keys
from foundation.model import validate_name

DEFAULT_BITS = 2048
PUBLIC_EXPONENT = 65537
DEFAULT_COMMENT = "root@pacemaker-cloud"
KEY_TYPE = "ssh-rsa"


@dataclass(frozen=True)
class KeyPair:
    private_pem: bytes  # traditional (PKCS#1) PEM, unencrypted
    public_line: str  # ``ssh-rsa AAAA... comment``


def generate_rsa_keypair(bits: int = DEFAULT_BITS, comment: str = DEFAULT_COMMENT) -> KeyPair:
    """A fresh RSA key pair (e = 65537) as PEM plus its OpenSSH public line."""
    if bits < 2048 or bits % 8:
        raise InvalidInput(f"RSA key size must be a multiple of 8 and at least 2048, not {bits}")
    if any(c in comment for c in "\r\n"):
        raise InvalidInput("key comment must be a single line")
    key = RSA.gen_key(bits, PUBLIC_EXPONENT, _quiet)
    return KeyPair(private_pem=_private_pem(key), public_line=_public_line(key, comment))


def public_line_from_pem(private_pem: bytes, comment: str = DEFAULT_COMMENT) -> str:
    """The OpenSSH public line of a PEM private key."""
    key = RSA.load_key_bio(BIO.MemoryBuffer(private_pem))
    return _public_line(key, comment)


def ssh_rsa_blob(e: int, n: int) -> bytes:
    """The SSH wire encoding of an RSA public key: string, mpint e, mpint n."""
    return _ssh_string(KEY_TYPE.encode()) + _mpint(e) + _mpint(n)


def _quiet(_step: int, _n: int) -> int:
    """M2Crypto's progress callback; the default one prints dots."""
    return 1


def _private_pem(key: RSA.RSA) -> bytes:
    bio = BIO.MemoryBuffer()
    key.save_key_bio(bio, cipher=None)
    pem: bytes = bio.read()
    return pem


def _public_line(key: RSA.RSA, comment: str) -> str:
    e, n = (_int_from_openssl_mpi(v) for v in (key.e, key.n))
    blob = base64.b64encode(ssh_rsa_blob(e, n)).decode("ascii")
    return f"{KEY_TYPE} {blob} {comment}".rstrip()


def _int_from_openssl_mpi(value: bytes) -> int:
    """M2Crypto's ``e``/``n``: a 4-byte big-endian length, then the magnitude."""
    (length,) = struct.unpack(">I", value[:4])
    return int.from_bytes(value[4 : 4 + length], "big")


def _ssh_string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _mpint(value: int) -> bytes:
    """RFC 4251 mpint for a non-negative integer: minimal bytes, a 0x00 if the top bit is set."""
    if value < 0:
        raise ValueError("negative mpint")
    if value == 0:
        return _ssh_string(b"")
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    if raw[0] & 0x80:
        raw = b"\x00" + raw
    return _ssh_string(raw)


# -- the key directory ------------------------------------------------------


def write_assembly_keys(
    keys_dir: Path, assembly: str, *, overwrite: bool = False, bits: int = DEFAULT_BITS
) -> AssemblyKeys:
    """Make (or keep) an assembly's login and host key pairs in ``keys_dir``.

    A complete pair is kept unless ``overwrite``; a half pair is regenerated.
    Every file is written to a temporary name and renamed into place.
    """
    validate_name(assembly, "assembly name")
    _ensure_keys_dir(keys_dir)
    private, public, host_private, host_public = key_paths(keys_dir, assembly)
    _write_pair_if_needed(private, public, overwrite, bits, f"root@{assembly}")
    _write_pair_if_needed(host_private, host_public, overwrite, bits, f"host@{assembly}")
    return load_assembly_keys(keys_dir, assembly)


def delete_assembly_keys(keys_dir: Path, assembly: str) -> None:
    """Remove an assembly's key files; nothing to remove is fine."""
    validate_name(assembly, "assembly name")
    for path in key_paths(keys_dir, assembly):
        path.unlink(missing_ok=True)


def _ensure_keys_dir(keys_dir: Path) -> None:
    if keys_dir.exists() and not keys_dir.is_dir():
        raise InvalidInput(f"key directory {keys_dir} is not a directory")
    try:
        keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(keys_dir, 0o700)
    except PermissionError as exc:
        raise Forbidden(f"cannot use key directory {keys_dir}: {exc.strerror}") from exc


def _write_pair_if_needed(
    private: Path, public: Path, overwrite: bool, bits: int, comment: str
) -> None:
    if not overwrite and private.is_file() and public.is_file():
        return
    pair = generate_rsa_keypair(bits, comment)
    # The public half goes last: a crash in between leaves a half pair,
    # which the next call regenerates (never an old public with a new private).
    public.unlink(missing_ok=True)
    _atomic_write(private, pair.private_pem, 0o600)
    _atomic_write(public, (pair.public_line + "\n").encode(), 0o644)


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
