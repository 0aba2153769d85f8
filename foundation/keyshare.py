"""The assemblies' keys, shared by every member through the store, private keys sealed.

A member that adopts a deployable needs its assemblies' root login key and
SSH host key pair (``foundation.keyfiles``).  They travel in the store, not
on shared storage: a member already depends on the database, and a second
shared system (NFS) would be one more thing whose loss stops adoption.  The
price is that the database holds root keys, so private keys are sealed
before they reach it: AES-256-GCM under the cluster key (``[cped] key_file``:
32 random bytes as 64 hex digits, mode 0600, the same file on every member,
copied out of band), with the assembly and the key's role as associated data
(a sealed key cannot be passed off as another assembly's).  The database and
its backups alone reveal no private key; a member's host, which must hold
the cluster key to act, reveals them all, as it would with shared storage.
Public keys (the pinned host key among them) are stored as they are.
Nothing here logs a key or puts one in an error message.

``publish`` copies what this member has in its key directory into the store
(when it differs); ``fetch`` writes what the store has into the key directory
(private keys 0600, each file replaced atomically).
"""

from __future__ import annotations

import base64
import os
import secrets
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from foundation.errors import InvalidInput, StoreError
from foundation.keyfiles import key_paths
from foundation.store import Store

SEALED_PREFIX = "v1:"
KEY_BYTES = 32
NONCE_BYTES = 12
PRIVATE = ("private_key", "host_private_key")
FILES = ("private_key", "public_key", "host_private_key", "host_public_key")  # key_paths' order


def load_cluster_key(path: Path) -> bytes:
    """The cluster key from ``path``: 64 hex digits, readable by its owner only."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInput(f"cannot read the key file {path}: {error}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InvalidInput(f"the key file {path} is readable by others: chmod 600 it")
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise InvalidInput(
            f"the key file {path} must hold {KEY_BYTES} bytes as {2 * KEY_BYTES} hex digits"
            " (openssl rand -hex 32)"
        )
    return key


def seal(key: bytes, assembly: str, role: str, secret: bytes) -> str:
    nonce = secrets.token_bytes(NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, secret, _context(assembly, role))
    return SEALED_PREFIX + base64.b64encode(nonce + sealed).decode("ascii")


def unseal(key: bytes, assembly: str, role: str, text: str) -> bytes:
    if not text.startswith(SEALED_PREFIX):
        raise StoreError(f"the stored {role} of assembly {assembly} is not sealed")
    raw = base64.b64decode(text[len(SEALED_PREFIX) :])
    try:
        return AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _context(assembly, role))
    except InvalidTag:
        raise StoreError(
            f"cannot unseal the {role} of assembly {assembly}: this member's key_file is not"
            " the one it was sealed with"
        ) from None


def _context(assembly: str, role: str) -> bytes:
    return f"pacemaker-cloud:{assembly}:{role}".encode()


@dataclass(frozen=True)
class KeyShare:
    store: Store
    keys_dir: Path
    cluster_key: bytes

    def publish(self, assemblies: Iterable[str]) -> list[str]:
        """Put the local keys of ``assemblies`` in the store where they differ; which."""
        published = []
        for assembly in assemblies:
            local = self._read_local(assembly)
            if local is not None and not self._stored_equals(assembly, local):
                self.store.put_assembly_keys(assembly, self._sealed(assembly, local))
                published.append(assembly)
        return published

    def fetch(self, assemblies: Iterable[str]) -> list[str]:
        """Write the stored keys of ``assemblies`` here where they differ; which."""
        fetched = []
        for assembly in assemblies:
            stored = self._stored(assembly)
            if stored is not None and self._read_local(assembly) != stored:
                self._write_local(assembly, stored)
                fetched.append(assembly)
        return fetched

    def _read_local(self, assembly: str) -> dict[str, bytes] | None:
        paths = key_paths(self.keys_dir, assembly)
        try:
            return {role: path.read_bytes() for role, path in zip(FILES, paths, strict=True)}
        except OSError:
            return None  # not here, or only half here: nothing to publish

    def _stored(self, assembly: str) -> dict[str, bytes] | None:
        row = self.store.get_assembly_keys(assembly)
        if row is None:
            return None
        return {
            role: unseal(self.cluster_key, assembly, role, row[role])
            if role in PRIVATE
            else row[role].encode()
            for role in FILES
        }

    def _stored_equals(self, assembly: str, local: dict[str, bytes]) -> bool:
        try:
            return self._stored(assembly) == local
        except StoreError:
            return False  # sealed with another cluster key: replace it

    def _sealed(self, assembly: str, local: dict[str, bytes]) -> dict[str, str]:
        return {
            role: seal(self.cluster_key, assembly, role, local[role])
            if role in PRIVATE
            else local[role].decode()
            for role in FILES
        }

    def _write_local(self, assembly: str, keys: dict[str, bytes]) -> None:
        self.keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for role, path in zip(FILES, key_paths(self.keys_dir, assembly), strict=True):
            mode = 0o600 if role in PRIVATE else 0o644
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "wb") as out:
                out.write(keys[role])
            os.replace(tmp, path)
