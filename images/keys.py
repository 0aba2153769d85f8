"""SSH key pairs for assemblies, made with M2Crypto.

Each assembly gets two pairs: root's login key and the SSH host key its
instances present (the engine pins the host key's public line).  They are
ECDSA keys on NIST P-256: one takes about a millisecond to make where an RSA
2048 key takes 0.1 to 0.3 s, which made an import of 2,000 assemblies take ten
minutes.  RSA pairs can still be made, and keys made before stay valid (the
key files say their type).  M2Crypto writes PEM but knows nothing of
OpenSSH's public format, so the ``ecdsa-sha2-nistp256 AAAA... comment`` and
``ssh-rsa AAAA... comment`` lines are assembled here in SSH wire format
(RFC 4251 strings and mpints, RFC 5656 for ECDSA).
"""

from __future__ import annotations

import base64
import os
import re
import struct
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from M2Crypto import BIO, EC, RSA

from foundation.errors import Forbidden, InvalidInput
from foundation.keyfiles import AssemblyKeys, key_paths, load_assembly_keys
from foundation.model import validate_name

DEFAULT_BITS = 2048
PUBLIC_EXPONENT = 65537
DEFAULT_COMMENT = "root@pacemaker-cloud"
KEY_TYPE = "ssh-rsa"
ECDSA_KEY_TYPE = "ecdsa-sha2-nistp256"
ECDSA_CURVE = "nistp256"
EC_PEM_HEADER = b"-----BEGIN EC PRIVATE KEY-----"
TEMPORARY = re.compile(r"\..+\.[a-z0-9_]{8}")  # a key file being written (tempfile's suffix)


@dataclass(frozen=True)
class KeyPair:
    private_pem: bytes  # traditional PEM (PKCS#1 for RSA, SEC 1 for ECDSA), unencrypted
    public_line: str  # ``ecdsa-sha2-nistp256 AAAA... comment`` (or ``ssh-rsa ...``)


def generate_keypair(comment: str = DEFAULT_COMMENT) -> KeyPair:
    """A fresh ECDSA P-256 key pair as PEM plus its OpenSSH public line."""
    _check_comment(comment)
    key = EC.gen_params(EC.NID_X9_62_prime256v1)
    key.gen_key()
    bio = BIO.MemoryBuffer()
    key.save_key_bio(bio, cipher=None)
    return KeyPair(private_pem=bio.read(), public_line=_ecdsa_public_line(key, comment))


def generate_rsa_keypair(bits: int = DEFAULT_BITS, comment: str = DEFAULT_COMMENT) -> KeyPair:
    """A fresh RSA key pair (e = 65537) as PEM plus its OpenSSH public line."""
    if bits < 2048 or bits % 8:
        raise InvalidInput(f"RSA key size must be a multiple of 8 and at least 2048, not {bits}")
    _check_comment(comment)
    key = RSA.gen_key(bits, PUBLIC_EXPONENT, _quiet)
    return KeyPair(private_pem=_private_pem(key), public_line=_public_line(key, comment))


def public_line_from_pem(private_pem: bytes, comment: str = DEFAULT_COMMENT) -> str:
    """The OpenSSH public line of a PEM private key (ECDSA or RSA)."""
    if private_pem.lstrip().startswith(EC_PEM_HEADER):
        return _ecdsa_public_line(EC.load_key_bio(BIO.MemoryBuffer(private_pem)), comment)
    key = RSA.load_key_bio(BIO.MemoryBuffer(private_pem))
    return _public_line(key, comment)


def _check_comment(comment: str) -> None:
    if any(c in comment for c in "\r\n"):
        raise InvalidInput("key comment must be a single line")


def _ecdsa_public_line(key: EC.EC, comment: str) -> str:
    point = key.pub().get_key()  # uncompressed: 0x04 || x || y
    blob = _ssh_string(ECDSA_KEY_TYPE.encode()) + _ssh_string(ECDSA_CURVE.encode())
    encoded = base64.b64encode(blob + _ssh_string(point)).decode("ascii")
    return f"{ECDSA_KEY_TYPE} {encoded} {comment}".rstrip()


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


def write_assembly_keys(keys_dir: Path, assembly: str, *, overwrite: bool = False) -> AssemblyKeys:
    """Make (or keep) an assembly's login and host key pairs in ``keys_dir``.

    A complete pair is kept unless ``overwrite``; a half pair is regenerated.
    Every file is written to a temporary name and renamed into place.
    """
    validate_name(assembly, "assembly name")
    _ensure_keys_dir(keys_dir)
    private, public, host_private, host_public = key_paths(keys_dir, assembly)
    _write_pair_if_needed(private, public, overwrite, f"root@{assembly}")
    _write_pair_if_needed(host_private, host_public, overwrite, f"host@{assembly}")
    return load_assembly_keys(keys_dir, assembly)


def write_many_assembly_keys(
    keys_dir: Path,
    assemblies: Sequence[str],
    on_made: Callable[[int], None] = lambda _count: None,
) -> None:
    """New login and host key pairs for each assembly (left-overs replaced): all, or none.

    Should it fail or be interrupted (Ctrl-C), the key files it wrote are removed
    again.  ``on_made(count)`` is called after each assembly, for a progress bar.
    """
    for assembly in assemblies:
        validate_name(assembly, "assembly name")
    _ensure_keys_dir(keys_dir)
    written: list[str] = []
    try:
        for assembly in assemblies:
            written.append(assembly)
            private, public, host_private, host_public = key_paths(keys_dir, assembly)
            _write_pair(private, public, generate_keypair(f"root@{assembly}"), sync=False)
            _write_pair(host_private, host_public, generate_keypair(f"host@{assembly}"), sync=False)
            on_made(len(written))
        # one flush for them all: an fsync per file cost 10 ms each on a busy disk,
        # more than making the keys; the caller commits what refers to them after this
        os.sync()
    except BaseException:
        delete_many_assembly_keys(keys_dir, written)
        raise


def delete_assembly_keys(keys_dir: Path, assembly: str) -> None:
    """Remove an assembly's key files, and temporary ones an interrupted write left;
    nothing to remove is fine."""
    delete_many_assembly_keys(keys_dir, [assembly])


def delete_many_assembly_keys(keys_dir: Path, assemblies: Sequence[str]) -> None:
    """The same for several assemblies, with one look at the directory."""
    for assembly in assemblies:
        validate_name(assembly, "assembly name")
    names = {path.name for a in assemblies for path in key_paths(keys_dir, a)}
    for name in names:
        (keys_dir / name).unlink(missing_ok=True)
    for temporary in _temporaries(keys_dir):
        if temporary.name[1:-9] in names:
            temporary.unlink(missing_ok=True)


def _temporaries(keys_dir: Path) -> list[Path]:
    """``.NAME.XXXXXXXX``: what ``_atomic_write`` writes before renaming it to NAME."""
    try:
        return [p for p in keys_dir.iterdir() if TEMPORARY.fullmatch(p.name)]
    except OSError:
        return []


def _ensure_keys_dir(keys_dir: Path) -> None:
    if keys_dir.exists() and not keys_dir.is_dir():
        raise InvalidInput(f"key directory {keys_dir} is not a directory")
    try:
        keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(keys_dir, 0o700)
    except PermissionError as exc:
        raise Forbidden(f"cannot use key directory {keys_dir}: {exc.strerror}") from exc


def _write_pair_if_needed(private: Path, public: Path, overwrite: bool, comment: str) -> None:
    if not overwrite and private.is_file() and public.is_file():
        return
    _write_pair(private, public, generate_keypair(comment))


def _write_pair(private: Path, public: Path, pair: KeyPair, *, sync: bool = True) -> None:
    # The public half goes last: a crash in between leaves a half pair,
    # which the next call regenerates (never an old public with a new private).
    public.unlink(missing_ok=True)
    _atomic_write(private, pair.private_pem, 0o600, sync=sync)
    _atomic_write(public, (pair.public_line + "\n").encode(), 0o644, sync=sync)


def _atomic_write(path: Path, data: bytes, mode: int, *, sync: bool = True) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            if sync:
                os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
