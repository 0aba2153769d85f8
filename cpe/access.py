"""Who may use cped's API, decided on every request.

On the UNIX socket (mode 0660, group ``socket_group``) file permission is the
first gate.  cped then checks the peer's credentials (``SO_PEERCRED``):
allowed are root, cped's own uid, the uids of ``allowed_users``, and members
of ``socket_group`` (the peer's primary gid is that group, or the group
database lists the peer's user as a member).  Anyone else who manages to
connect (a socket whose mode was widened by hand, a process that kept an old
group) is refused with 403 ``forbidden``.

On the TCP listener, which exists only with TLS, every request must carry
``Authorization: Bearer TOKEN`` with the token of ``token_file``, compared in
constant time; otherwise 401 ``unauthorized``.  The token is never logged and
never part of an error message; ``Access``'s repr leaves it out.
"""

from __future__ import annotations

import grp
import hmac
import os
import pwd
import ssl
import stat
from dataclasses import dataclass, field
from pathlib import Path

from foundation.config import CpedSettings
from foundation.errors import Forbidden, Unauthorized
from foundation.model import Problems

MIN_TOKEN_LENGTH = 16
BEARER = "bearer "


@dataclass(frozen=True)
class Peer:
    """The other end of a request: a local process (UNIX socket) or a TCP address."""

    uid: int | None = None
    gid: int | None = None
    pid: int | None = None
    address: str | None = None  # "host:port" on the TCP listener

    def describe(self) -> str:
        if self.address is not None:
            return f"tcp peer {self.address} (bearer token)"
        return f"uid={self.uid} pid={self.pid}"


@dataclass(frozen=True)
class Access:
    uids: frozenset[int] = frozenset()
    gid: int | None = None
    group_members: frozenset[str] = frozenset()
    token: bytes | None = field(default=None, repr=False)

    def check_peer(self, peer: Peer) -> None:
        """Raise Forbidden unless the local peer may use the API."""
        if peer.uid is None:
            raise Forbidden("cannot tell which user is on the other end of the socket")
        if self._peer_allowed(peer.uid, peer.gid):
            return
        raise Forbidden(
            f"uid {peer.uid} may not use cped's API: allowed are root, cped's own user,"
            " [cped] allowed_users and members of [cped] socket_group",
            uid=str(peer.uid),
        )

    def _peer_allowed(self, uid: int, gid: int | None) -> bool:
        if uid in self.uids:
            return True
        if self.gid is None:
            return False
        return gid == self.gid or _user_name(uid) in self.group_members

    def check_token(self, authorization: str | None) -> None:
        """Raise Unauthorized unless the header carries the right bearer token."""
        if self.token is None:
            raise Unauthorized("this listener accepts no request: cped has no token_file")
        if authorization is None or not authorization.lower().startswith(BEARER):
            raise Unauthorized("a bearer token is required (Authorization: Bearer TOKEN)")
        # header bytes aiohttp could not decode come as surrogates: they never match
        offered = authorization[len(BEARER) :].strip().encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(offered, self.token):
            raise Unauthorized("the bearer token is not valid")


def load_access(settings: CpedSettings, where: Path | None = None) -> Access:
    """The access rules of a configuration; InvalidInput names the setting at fault."""
    problems = Problems()
    token = None
    if settings.token_file is not None:
        token = _read_token(settings.token_file, problems)
    group = _group(settings.socket_group, problems)
    problems.raise_if_any(f"invalid configuration in {where or 'the defaults'}")
    uids = frozenset({0, os.geteuid(), *settings.allowed_users})
    if group is None:
        return Access(uids, token=token)
    return Access(uids, group.gr_gid, frozenset(group.gr_mem), token)


def _group(name: str | None, problems: Problems) -> grp.struct_group | None:
    if name is None:
        return None
    try:
        return grp.getgrnam(name)
    except KeyError:
        problems.add("[cped] socket_group", f"no such group: {name!r}")
        return None


def _read_token(path: Path, problems: Problems) -> bytes | None:
    where = "[cped] token_file"
    try:
        with path.open("rb") as stream:
            mode = os.fstat(stream.fileno()).st_mode
            token = stream.read().strip()
    except OSError as error:
        problems.add(where, f"cannot read {path}: {error.strerror}")
        return None
    if stat.S_IMODE(mode) & 0o007:
        problems.add(where, f"{path} is accessible to every user: make it 0600 or 0640")
    elif len(token) < MIN_TOKEN_LENGTH or any(b <= 32 or b > 126 for b in token):
        problems.add(
            where,
            f"{path} must hold one token of at least {MIN_TOKEN_LENGTH} printable"
            " characters without spaces",
        )
    else:
        return token
    return None


def tls_context(settings: CpedSettings, where: Path | None = None) -> ssl.SSLContext | None:
    """The server's TLS context for the TCP listener, or None without one."""
    if settings.listen is None:
        return None
    assert settings.tls_certificate is not None and settings.tls_key is not None
    problems = Problems()
    try:
        if stat.S_IMODE(settings.tls_key.stat().st_mode) & 0o007:
            problems.add("[cped] tls_key", f"{settings.tls_key} is accessible to every user")
    except OSError as error:
        problems.add("[cped] tls_key", f"cannot read {settings.tls_key}: {error.strerror}")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(settings.tls_certificate, settings.tls_key)
    except (ssl.SSLError, OSError) as error:
        problems.add(
            "[cped] tls_certificate",
            f"cannot use {settings.tls_certificate} with the key {settings.tls_key}: {error}",
        )
    problems.raise_if_any(f"invalid configuration in {where or 'the defaults'}")
    return context


def _user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None
