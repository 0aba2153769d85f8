"""SSH transport: one persistent asyncssh connection per instance, host key pinned.

The only module that imports asyncssh.  ``SshTransport.connect`` trusts exactly
the assembly's pinned host key (no known_hosts file, no trust on first use: a
guest presenting any other key raises ``Forbidden``, also one that hangs up
because it has no key of the pinned key's type) and logs in with the
assembly's private key only (no agent, no ``~/.ssh`` files or config).

On a connection, ``run`` executes commands on their own channels, several in
flight (at most ``max_sessions`` at once, below OpenSSH's default
``MaxSessions 10``), each under a hard timeout; ``keepalive`` sends a
``keepalive@openssh.com`` global request, which sshd answers itself without
starting a process; ``open_channel`` starts a command that stays (the guest
agent) and gives its standard input and output as bytes, the output read or
handed on from asyncssh's own callback as it arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import socket
from collections import deque
from collections.abc import Callable
from typing import Any

import asyncssh
from asyncssh.encryption import get_default_encryption_algs

from dpe.interfaces import CommandResult, Instance, OnEnd
from foundation.errors import Forbidden, OperationTimeout, Unavailable
from foundation.keyfiles import AssemblyKeys

log = logging.getLogger(__name__)

MAX_SESSIONS = 8
OUTPUT_LIMIT = 64 * 1024  # characters kept of each of stdout and stderr
_KEEPALIVE_REQUEST = b"keepalive@openssh.com"
_STDERR_TAIL = 8 * 1024  # bytes of a long-lived channel's standard error kept


class _Client(asyncssh.SSHClient):
    """Records the loss of the connection (asyncssh answers requests on a
    closed connection without error, so ``keepalive`` must know)."""

    def __init__(self) -> None:
        self.lost = False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


class SshConnection:
    """A live SSH connection to one instance (implements ``dpe.interfaces.Connection``)."""

    def __init__(
        self, conn: asyncssh.SSHClientConnection, client: _Client, label: str, max_sessions: int
    ) -> None:
        self._conn = conn
        self._client = client
        self._label = label
        self.max_sessions = max_sessions
        self._sessions = asyncio.Semaphore(max_sessions)

    @property
    def closed(self) -> bool:
        return self._client.lost

    async def run(self, command: str, timeout: float) -> CommandResult:
        """Run ``command`` (a shell command line) on a new channel.

        Raises ``OperationTimeout`` when it has not finished within ``timeout``
        seconds (its channel is then closed after a KILL signal request) and
        ``Unavailable`` when the connection is gone.  sshd keeps the session
        of an abandoned command (and does not deliver signals to root's
        sessions) until the command ends: commands that may hang must bound
        themselves on the guest, as ``dpe.agents`` commands do."""
        self._check_open()
        process: asyncssh.SSHClientProcess[str] | None = None
        try:
            async with asyncio.timeout(timeout), self._sessions:
                process = await self._conn.create_process(
                    command, stdin=asyncssh.DEVNULL, encoding="utf-8", errors="replace"
                )
                completed = await process.wait(check=False)
        except TimeoutError:
            _abandon(process)
            raise OperationTimeout(
                f"{self._label}: command did not finish within {timeout:g} s", details=command
            ) from None
        except (asyncssh.Error, OSError) as exc:
            _abandon(process)
            raise Unavailable(f"{self._label}: {_describe(exc)}") from exc
        except asyncio.CancelledError:
            _abandon(process)  # the caller gave up: free the channel
            raise
        return _result(completed, self._label)

    async def keepalive(self, timeout: float) -> None:
        """An SSH-level ping answered by sshd itself; raises ``OperationTimeout``
        or ``Unavailable``."""
        self._check_open()
        try:
            # asyncssh has no public request-with-reply call; this is the one its
            # own keepalive timer uses.  Success or failure both prove liveness.
            await asyncio.wait_for(self._conn._make_global_request(_KEEPALIVE_REQUEST), timeout)
        except TimeoutError:
            raise OperationTimeout(
                f"{self._label}: no keepalive answer within {timeout:g} s"
            ) from None
        except (asyncssh.Error, OSError) as exc:
            raise Unavailable(f"{self._label}: {_describe(exc)}") from exc
        self._check_open()

    async def open_channel(self, command: str, timeout: float) -> SshChannel:
        """Start ``command`` on a channel of its own that stays open (bytes in and out).

        It takes no place among ``max_sessions`` (those are for short commands).
        Raises ``OperationTimeout`` or ``Unavailable``."""
        self._check_open()
        try:
            async with asyncio.timeout(timeout):
                _, channel = await self._conn.create_session(
                    functools.partial(SshChannel, self._label), command, encoding=None
                )
        except TimeoutError:
            raise OperationTimeout(
                f"{self._label}: no channel within {timeout:g} s", details=command
            ) from None
        except (asyncssh.Error, OSError) as exc:
            raise Unavailable(f"{self._label}: {_describe(exc)}") from exc
        assert isinstance(channel, SshChannel)
        return channel

    async def close(self) -> None:
        self._conn.close()
        try:
            await asyncio.wait_for(self._conn.wait_closed(), 2.0)
        except (TimeoutError, asyncssh.Error, OSError):
            self._conn.abort()

    def _check_open(self) -> None:
        if self._client.lost:
            raise Unavailable(f"{self._label}: connection lost")


class SshChannel(asyncssh.SSHClientSession[bytes]):
    """A long-lived command on its own channel (implements
    ``dpe.interfaces.PushingChannel``): the channel's asyncssh session itself.

    Its output is handed on from asyncssh's callback as it arrives (to
    ``deliver_to``'s receiver, or kept for ``read``): a heartbeat of the guest
    agent costs dped one turn of its loop, with no stream, lock or task woken.
    Its standard error is kept as a tail for diagnostics."""

    def __init__(self, label: str) -> None:
        self._label = label
        self._chan: asyncssh.SSHClientChannel[bytes] | None = None
        self._output: deque[bytes] = deque()
        self._on_data: Callable[[bytes], None] | None = None
        self._on_end: OnEnd | None = None
        self._ended = False
        self._failure: str | None = None  # why the channel failed, when it did
        self._arrived = asyncio.Event()  # for ``read``
        self._writable = asyncio.Event()
        self._writable.set()
        self._closed = asyncio.get_running_loop().create_future()
        self._stderr = bytearray()

    # -- dped's side

    def deliver_to(self, on_data: Callable[[bytes], None], on_end: OnEnd) -> None:
        self._on_data, self._on_end = on_data, on_end
        while self._output and self._on_data is not None:
            on_data(self._output.popleft())
        if self._ended:
            self._call_on_end()

    async def read(self, size: int) -> bytes:
        while not self._output and not self._ended:
            self._arrived.clear()
            await self._arrived.wait()
        if self._output:
            chunk = self._output.popleft()
            if len(chunk) > size:
                self._output.appendleft(chunk[size:])
            return chunk[:size]
        if self._failure is not None:
            raise Unavailable(self._failure)
        return b""

    async def write(self, data: bytes) -> None:
        try:
            self._channel().write(data)
        except (asyncssh.Error, OSError) as exc:
            raise Unavailable(f"{self._label}: {_describe(exc)}") from exc
        await self._writable.wait()  # the guest reads what waits (asyncssh's window)
        if self._closed.done():
            raise Unavailable(self._failure or f"{self._label}: channel closed")

    def write_eof(self) -> None:
        with contextlib.suppress(asyncssh.Error, OSError):
            self._channel().write_eof()

    async def wait(self, timeout: float) -> int:
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._closed)
        except TimeoutError:
            raise OperationTimeout(
                f"{self._label}: channel still open after {timeout:g} s"
            ) from None
        chan = self._channel()
        exit_signal = chan.get_exit_signal()
        if exit_signal is not None:
            return 128 + _signal_number(exit_signal[0])
        status = chan.get_exit_status()
        if status is None or status < 0:
            raise Unavailable(
                self._failure or f"{self._label}: channel closed without an exit status"
            )
        return status

    def stderr_tail(self) -> str:
        return self._stderr.decode("utf-8", "replace")

    def close(self) -> None:
        self._on_data = self._on_end = None
        if self._chan is not None:
            self._chan.close()

    def _channel(self) -> asyncssh.SSHClientChannel[bytes]:
        assert self._chan is not None, "asyncssh opened the channel before returning it"
        return self._chan

    # -- asyncssh's side

    def connection_made(self, chan: asyncssh.SSHClientChannel[bytes]) -> None:
        self._chan = chan

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if datatype == asyncssh.EXTENDED_DATA_STDERR:
            self._stderr += data
            del self._stderr[:-_STDERR_TAIL]
        elif self._on_data is not None:
            self._hand_on(self._on_data, data)
        else:
            self._output.append(data)
            self._arrived.set()

    def _hand_on(self, on_data: Callable[[bytes], None], data: bytes) -> None:
        """A receiver's bug ends this channel, not the connection asyncssh called us from."""
        try:
            on_data(data)
        except Exception:
            log.exception("%s: the channel's receiver failed", self._label)
            self._end(f"{self._label}: the channel's receiver failed")
            self.close()

    def eof_received(self) -> bool:
        self._end(None)
        return True  # half open: the exit status comes after the output's end

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(f"{self._label}: {_describe(exc)}" if exc is not None else None)
        self._writable.set()
        if not self._closed.done():
            self._closed.set_result(None)

    def _end(self, failure: str | None) -> None:
        if self._ended:
            return
        self._ended, self._failure = True, failure
        self._arrived.set()
        self._call_on_end()

    def _call_on_end(self) -> None:
        ended, self._on_end = self._on_end, None  # once
        if ended is not None:
            ended(self._failure)


def _abandon(process: asyncssh.SSHClientProcess[str] | None) -> None:
    """Ask sshd to kill the command, then close its channel."""
    if process is None:
        return
    with contextlib.suppress(asyncssh.Error, OSError):
        process.send_signal("KILL")
    process.close()


def _result(completed: asyncssh.SSHCompletedProcess, label: str) -> CommandResult:
    """A signal's death reads as a shell would report it: 128 + the signal number."""
    if completed.exit_signal is not None:
        status = 128 + _signal_number(completed.exit_signal[0])
    elif completed.exit_status is None or completed.exit_status < 0:
        raise Unavailable(f"{label}: channel closed without an exit status")
    else:
        status = completed.exit_status
    return CommandResult(status, _text(completed.stdout), _text(completed.stderr))


def _signal_number(name: str) -> int:
    try:
        return int(signal.Signals[f"SIG{name}"])
    except KeyError:
        return 0


def _text(data: Any) -> str:
    text = data if isinstance(data, str) else ""
    return text[-OUTPUT_LIMIT:]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncssh.Error):
        return exc.reason or type(exc).__name__
    return str(exc) or type(exc).__name__


class SshTransport:
    """Connects to instances over SSH (implements ``dpe.interfaces.Transport``)."""

    def __init__(self, max_sessions: int = MAX_SESSIONS) -> None:
        self.max_sessions = max_sessions
        # asyncssh logs every channel at INFO; the engine logs what matters
        logging.getLogger("asyncssh").setLevel(logging.WARNING)

    async def connect(
        self, instance: Instance, keys: AssemblyKeys, timeout: float
    ) -> SshConnection:
        """One connection to ``instance``; raises ``Forbidden`` when it presents
        another host key or refuses our key, ``OperationTimeout`` or
        ``Unavailable`` otherwise."""
        label = f"{instance.assembly} ({instance.ssh_host}:{instance.ssh_port})"
        options = _options(instance, keys, timeout)
        try:
            async with asyncio.timeout(timeout):
                conn, client = await asyncssh.create_connection(
                    _Client, instance.ssh_host, instance.ssh_port, options=options
                )
        except TimeoutError:
            raise OperationTimeout(f"{label}: no SSH connection within {timeout:g} s") from None
        except asyncssh.HostKeyNotVerifiable as exc:
            raise Forbidden(
                f"{label}: host key does not match the pinned key: {exc.reason}"
            ) from exc
        except asyncssh.PermissionDenied as exc:
            raise Forbidden(f"{label}: login refused: {exc.reason}") from exc
        except (asyncssh.Error, OSError) as exc:
            foreign = await _foreign_host_key(instance, keys, timeout / 2)
            if foreign is not None:
                raise Forbidden(
                    f"{label}: host key does not match the pinned key: {foreign}"
                ) from exc
            raise Unavailable(f"{label}: {_describe(exc)}") from exc
        _set_nodelay(conn)
        assert isinstance(client, _Client)
        return SshConnection(conn, client, label, self.max_sessions)


async def _foreign_host_key(instance: Instance, keys: AssemblyKeys, timeout: float) -> str | None:
    """After a handshake that ended early: what the server presents instead of the
    pinned key, if it is not the pinned guest (None: it is, or it does not answer).

    The client offers only the pinned key's algorithms, so a server without a key of
    that type just hangs up, which reads like a lost guest.  Asked again for a key of
    that type, the pinned guest presents the pinned key; a server that has none
    presents, asked for any type, a key that is not ours."""
    try:
        pinned = asyncssh.import_public_key(keys.host_public_key)
    except asyncssh.KeyImportError:
        return None
    algorithms = [a.decode() for a in pinned.sig_algorithms]
    same_type = await _server_host_key(instance, timeout, algorithms)
    if same_type is not None:
        if same_type.public_data == pinned.public_data:
            return None
        return f"it presents {same_type.get_algorithm()} {same_type.get_fingerprint()}"
    other = await _server_host_key(instance, timeout, "default")
    if other is None:
        return None
    return (
        f"it has no {pinned.get_algorithm()} host key and presents"
        f" {other.get_algorithm()} {other.get_fingerprint()}"
    )


async def _server_host_key(
    instance: Instance, timeout: float, algorithms: str | list[str]
) -> asyncssh.SSHKey | None:
    try:
        async with asyncio.timeout(timeout):
            return await asyncssh.get_server_host_key(
                instance.ssh_host, instance.ssh_port, server_host_key_algs=algorithms, config=[]
            )
    except (TimeoutError, asyncssh.Error, OSError):
        return None


def _options(
    instance: Instance, keys: AssemblyKeys, timeout: float
) -> asyncssh.SSHClientConnectionOptions:
    try:
        host_key = asyncssh.import_public_key(keys.host_public_key)
        client_key = asyncssh.read_private_key(keys.private_key)
    except (asyncssh.KeyImportError, OSError) as exc:
        raise Forbidden(f"{instance.assembly}: unusable key: {exc}") from exc
    return asyncssh.SSHClientConnectionOptions(
        username=instance.username,
        known_hosts=([host_key], [], []),
        client_keys=[client_key],
        agent_path=None,
        config=[],
        x509_trusted_certs=None,
        password_auth=False,
        kbdint_auth=False,
        gss_auth=False,
        gss_kex=False,
        connect_timeout=timeout,
        keepalive_interval=0,
        encryption_algs=encryption_algorithms(),
    )


@functools.cache
def encryption_algorithms() -> list[str]:
    """asyncssh's ciphers, AES-GCM first where the CPU does AES itself.

    ChaCha20-Poly1305 (asyncssh's first choice) takes three cipher contexts
    and a MAC per packet, AES-GCM one call: on an idle connection, where a
    heartbeat a second is all there is, a third less of dped's CPU.  The
    guest's sshd still picks among them all."""
    names = [name.decode() for name in get_default_encryption_algs()]
    if not _cpu_has_aes():
        return names
    first = [name for name in names if name.endswith("-gcm@openssh.com")]
    return first + [name for name in names if name not in first]


def _cpu_has_aes(cpuinfo_path: str = "/proc/cpuinfo") -> bool:
    """The CPU's AES instructions (x86's ``flags``, arm64's ``Features``: ``aes``)."""
    try:
        with open(cpuinfo_path, encoding="ascii", errors="replace") as cpuinfo:
            return any(
                line.startswith(("flags", "Features")) and "aes" in line.split() for line in cpuinfo
            )
    except OSError:
        return False


def _set_nodelay(conn: asyncssh.SSHClientConnection) -> None:
    sock = conn.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def rehearse_handshake(timeout: float = 10.0) -> None:
    """One SSH handshake with itself on the loopback, then closed.

    The dped template runs it before it forks: OpenSSL's and asyncssh's
    lazily built state (algorithms fetched, curves, ciphers) is then made
    once there and shared by every dped instead of made again in each."""
    host_key = asyncssh.generate_private_key("ecdsa-sha2-nistp256")
    client_key = asyncssh.generate_private_key("ecdsa-sha2-nistp256")
    authorized = asyncssh.import_authorized_keys(client_key.export_public_key().decode())
    async with asyncio.timeout(timeout):
        server = await asyncssh.listen(
            "127.0.0.1", 0, server_host_keys=[host_key], authorized_client_keys=authorized
        )
        try:
            port = server.sockets[0].getsockname()[1]
            host_public = host_key.convert_to_public()
            async with asyncssh.connect(
                "127.0.0.1",
                port,
                username="rehearsal",
                known_hosts=([host_public], [], []),
                client_keys=[client_key],
                agent_path=None,
                config=[],
                password_auth=False,
                kbdint_auth=False,
                gss_auth=False,
                gss_kex=False,
                encryption_algs=encryption_algorithms(),
            ):
                pass
        finally:
            server.close()
            await server.wait_closed()
