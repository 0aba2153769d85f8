"""The SSH transport against real sshd guests of the local driver."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from dpe.drivers.local import LocalDriver
from dpe.engine_assembly import connect_with_retries
from dpe.engine_timing import EngineOptions
from dpe.interfaces import Connection, Instance, PushingChannel
from dpe.transport import SshChannel, SshConnection, SshTransport, encryption_algorithms
from foundation.clock import SystemClock
from foundation.errors import Forbidden, OperationTimeout, Unavailable
from foundation.keyfiles import AssemblyKeys
from tests.integration import test_local_driver_support as support
from tests.integration.test_local_driver_support import (
    CONNECT_TIMEOUT,
    Guest,
    instance_processes,
    make_key,
    signal_the_living,
)

# fixtures
key_dir, ssh_keys, other_host_key, local_driver, guest = (
    support.key_dir,
    support.ssh_keys,
    support.other_host_key,
    support.local_driver,
    support.guest,
)

pytestmark = pytest.mark.integration


async def test_run_returns_status_and_output(guest: Guest) -> None:
    result = await guest.connection.run("echo out; echo err >&2; exit 3", 5)
    assert (result.exit_status, result.stdout, result.stderr) == (3, "out\n", "err\n")


async def test_a_command_killed_by_a_signal_has_a_shell_like_status(guest: Guest) -> None:
    result = await guest.connection.run("kill -TERM $$", 5)
    assert result.exit_status == 128 + signal.SIGTERM


async def test_commands_do_not_read_the_login_shells_rc_files(guest: Guest) -> None:
    # bash sources ~/.bashrc for an ssh command only at shell level 1; the
    # guest's sshd starts sessions with SHLVL=1, so the command's shell is at 2
    result = await guest.connection.run("echo $SHLVL", 5)
    assert result.stdout.split() == ["2"]


async def test_many_channels_in_flight_on_one_connection(guest: Guest) -> None:
    results = await asyncio.gather(*(guest.connection.run(f"echo {n}", 10) for n in range(30)))
    assert [r.stdout.strip() for r in results] == [str(n) for n in range(30)]


async def test_a_command_that_hangs_times_out(guest: Guest) -> None:
    started = time.monotonic()
    with pytest.raises(OperationTimeout):
        await guest.connection.run("sleep 30", 0.5)
    assert time.monotonic() - started < 3
    assert (await guest.connection.run("true", 5)).exit_status == 0  # still usable


async def test_cancelled_commands_give_back_their_places(guest: Guest) -> None:
    # more than max_sessions cancellations: none keeps a place on the connection
    # (the guest keeps a session until its command ends: agents bound theirs)
    for _ in range(3 * guest.connection.max_sessions):
        task = asyncio.ensure_future(guest.connection.run("sleep 2", 10))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert (await guest.connection.run("echo alive", 1)).stdout == "alive\n"


class Received:
    """What a channel handed on (``deliver_to``), and how it ended."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.endings: list[str | None] = []
        self.arrived = asyncio.Event()

    def take(self, data: bytes) -> None:
        self.data += data
        self.arrived.set()

    def end(self, failure: str | None) -> None:
        self.endings.append(failure)
        self.arrived.set()

    async def until(self, condition: Callable[[], bool], seconds: float = 5.0) -> None:
        async with asyncio.timeout(seconds):
            while not condition():
                self.arrived.clear()
                await self.arrived.wait()


async def test_a_channel_reads_writes_and_reports_its_exit(guest: Guest) -> None:
    channel = await guest.connection.open_channel("cat; echo trouble >&2; exit 4", 5)
    await channel.write(b"ping\n")
    assert await channel.read(3) == b"pin"  # at most what was asked, the rest kept
    assert await channel.read(100) == b"g\n"
    channel.write_eof()
    assert await channel.read(100) == b""
    assert await channel.wait(5) == 4
    assert channel.stderr_tail() == "trouble\n"
    channel.close()


async def test_a_channel_killed_by_a_signal_has_a_shell_like_status(guest: Guest) -> None:
    channel = await guest.connection.open_channel("kill -KILL $$", 5)
    assert await channel.wait(5) == 128 + signal.SIGKILL
    channel.close()


async def test_a_channel_hands_its_output_on_as_it_arrives(guest: Guest) -> None:
    command = "echo first; sleep 0.5; echo sent >&2; read x; echo $x; exit 3"
    channel = await guest.connection.open_channel(command, 5)
    assert isinstance(channel, SshChannel)
    assert isinstance(channel, PushingChannel)
    async with asyncio.timeout(5):  # the first line came half a second before this mark
        while "sent" not in channel.stderr_tail():
            await asyncio.sleep(0.05)
    received = Received()
    channel.deliver_to(received.take, received.end)
    assert received.data == b"first\n"  # what came before, at once
    await channel.write(b"second\n")
    await received.until(lambda: bool(received.endings))
    assert (bytes(received.data), received.endings) == (b"first\nsecond\n", [None])
    assert await channel.wait(5) == 3  # the status after the output's end
    channel.close()


async def test_a_failing_receiver_ends_its_channel_not_the_connection(guest: Guest) -> None:
    channel = await guest.connection.open_channel("echo one; sleep 30", 5)
    received = Received()

    def broken(data: bytes) -> None:
        raise RuntimeError("a bug in the receiver")

    channel.deliver_to(broken, received.end)
    await received.until(lambda: bool(received.endings))
    [failure] = received.endings
    assert failure is not None and failure.endswith(": the channel's receiver failed")
    assert (await guest.connection.run("echo alive", 5)).stdout == "alive\n"


async def test_a_channel_of_a_destroyed_guest_ends_with_the_failure(guest: Guest) -> None:
    channel = await guest.connection.open_channel("sleep 30", 5)
    received = Received()
    channel.deliver_to(received.take, received.end)
    await guest.driver.destroy(guest.instance.instance_id)
    await received.until(lambda: bool(received.endings), 10)
    [failure] = received.endings
    assert failure is not None and failure.endswith("Connection lost")
    with pytest.raises(Unavailable):
        await channel.write(b"anyone?\n")


async def test_the_connection_uses_the_first_cipher_sshd_shares(guest: Guest) -> None:
    assert isinstance(guest.connection, SshConnection)
    negotiated = guest.connection._conn.get_extra_info("send_cipher")
    assert negotiated == encryption_algorithms()[0]  # OpenSSH offers them all


async def test_keepalive_is_answered(guest: Guest) -> None:
    await guest.connection.keepalive(2)


async def test_keepalive_times_out_when_the_guests_sshd_is_stopped(guest: Guest) -> None:
    listed = [p.pid for p in instance_processes(guest.instance) if p.comm == "sshd"]
    # sessions of earlier tests may end between the listing and the signal: a
    # process that is gone serves nobody, so only the ones still there count
    stopped = signal_the_living(listed, signal.SIGSTOP)
    try:
        assert len(stopped) >= 2  # the listener and the process serving our connection
        with pytest.raises(OperationTimeout):
            await guest.connection.keepalive(0.5)
        with pytest.raises(OperationTimeout):
            await guest.connection.run("true", 0.5)
    finally:
        signal_the_living(stopped, signal.SIGCONT)
    await guest.connection.keepalive(10)  # generous: only liveness matters here


async def test_a_destroyed_guest_makes_the_connection_unavailable(guest: Guest) -> None:
    await guest.driver.destroy(guest.instance.instance_id)
    with pytest.raises((Unavailable, OperationTimeout)):
        await guest.connection.keepalive(2)
    await asyncio.sleep(0.1)
    with pytest.raises(Unavailable):
        await guest.connection.run("true", 2)


async def test_a_guest_presenting_another_host_key_is_refused(
    guest: Guest, other_host_key: str
) -> None:
    keys = replace(guest.keys, host_public_key=other_host_key)
    with pytest.raises(Forbidden, match="host key"):
        await SshTransport().connect(guest.instance, keys, CONNECT_TIMEOUT)


async def test_a_guest_without_a_key_of_the_pinned_type_is_refused_not_lost(
    guest: Guest, key_dir: Path
) -> None:
    """The guest's key is RSA; pinned, an Ed25519 one: offered only Ed25519, its sshd
    hangs up, and that is a host key mismatch, not a lost connection."""
    other = key_dir / "other.ed25519"
    if not other.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
            check=True,
            timeout=30,
        )
    pinned = other.with_name(other.name + ".pub").read_text().strip()
    keys = replace(guest.keys, host_public_key=pinned)
    with pytest.raises(Forbidden, match="it has no ssh-ed25519 host key and presents ssh-rsa"):
        await SshTransport().connect(guest.instance, keys, CONNECT_TIMEOUT)


async def test_a_login_key_the_guest_does_not_accept_is_refused(
    guest: Guest, key_dir: Path
) -> None:
    stranger = key_dir / "stranger"
    if not stranger.exists():
        make_key(stranger)
    keys = replace(guest.keys, private_key=stranger)
    with pytest.raises(Forbidden, match="login refused"):
        await SshTransport().connect(guest.instance, keys, CONNECT_TIMEOUT)


async def test_connect_to_a_closed_port_is_unavailable(ssh_keys: AssemblyKeys) -> None:
    with pytest.raises(Unavailable):
        await SshTransport().connect(_nowhere(), ssh_keys, 2)


async def test_connect_to_a_silent_port_times_out(ssh_keys: AssemblyKeys) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        instance = replace(_nowhere(), ssh_port=silent.getsockname()[1])
        with pytest.raises(OperationTimeout):
            await SshTransport().connect(instance, ssh_keys, 0.5)


# The engine connects with ``connect_with_retries``: a few attempts with back-off.
RETRYING = EngineOptions(connect_timeout=2.0, connect_attempts=3, retry_initial=0.05)


async def connect(transport: SshTransport, instance: Instance, keys: AssemblyKeys) -> Connection:
    return await connect_with_retries(transport, instance, keys, RETRYING, SystemClock())


async def test_connecting_gives_up_after_its_attempts(ssh_keys: AssemblyKeys) -> None:
    transport = CountingTransport()
    with pytest.raises(Unavailable, match=r"cannot connect to 127\.0\.0\.1"):
        await connect(transport, _nowhere(), ssh_keys)
    assert transport.attempts == RETRYING.connect_attempts


async def test_connecting_succeeds_once_the_guest_answers(guest: Guest) -> None:
    transport = CountingTransport(fail_first=2)
    connection = await connect(transport, guest.instance, guest.keys)
    assert transport.attempts == 3
    await connection.close()


async def test_connecting_does_not_retry_a_wrong_host_key(
    guest: Guest, other_host_key: str
) -> None:
    transport = CountingTransport()
    keys = replace(guest.keys, host_public_key=other_host_key)
    with pytest.raises(Forbidden):
        await connect(transport, guest.instance, keys)
    assert transport.attempts == 1


class CountingTransport(SshTransport):
    def __init__(self, fail_first: int = 0) -> None:
        super().__init__()
        self.attempts = 0
        self.fail_first = fail_first

    async def connect(
        self, instance: Instance, keys: AssemblyKeys, timeout: float
    ) -> SshConnection:
        self.attempts += 1
        if self.attempts <= self.fail_first:
            raise Unavailable("not yet")
        return await super().connect(instance, keys, timeout)


def _nowhere() -> Instance:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return Instance("x-1", "shop", "web", "127.0.0.1", "web", "127.0.0.1", port)


async def test_keys_made_by_the_image_builder_work_end_to_end(
    local_driver: LocalDriver, tmp_path: Path
) -> None:
    from images.keys import generate_rsa_keypair

    login, host = generate_rsa_keypair(), generate_rsa_keypair()
    for name, pair in (("login", login), ("host", host)):
        (tmp_path / name).write_bytes(pair.private_pem)
        (tmp_path / name).chmod(0o600)
    keys = AssemblyKeys(tmp_path / "login", login.public_line, tmp_path / "host", host.public_line)
    instance = await local_driver.create("shop", support.assembly(), keys)
    connection = await SshTransport().connect(instance, keys, CONNECT_TIMEOUT)
    try:
        assert (await connection.run("echo ok", 5)).stdout == "ok\n"
    finally:
        await connection.close()
