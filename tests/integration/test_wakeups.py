"""Wake-ups over a real UNIX datagram socket, and a real cped woken by them."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from cpe.wakeups import listen_for_wakeups, stop_listening
from foundation.paths import Paths
from foundation.wakeup import EVENT, LEASE, Wake, WakeSender

WITHIN = 10.0


async def test_what_a_sender_sends_reaches_the_listener_and_junk_does_not(
    pcloud_home: Paths,
) -> None:
    path = pcloud_home.wake_socket
    heard: asyncio.Queue[Wake] = asyncio.Queue()
    transport, _ = await listen_for_wakeups(path, heard.put_nowait)
    try:
        assert path.stat().st_mode & 0o777 == 0o600
        junk = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        junk.sendto(b"rm -rf /", str(path))
        junk.close()
        sender = WakeSender(path)
        sender.send(EVENT, "shop")
        sender.send(LEASE, "blog")
        sender.close()
        got = [await asyncio.wait_for(heard.get(), WITHIN) for _ in range(2)]
        assert got == [Wake(EVENT, "shop"), Wake(LEASE, "blog")]
        assert heard.empty()
    finally:
        stop_listening(transport, path)
    assert not path.exists()


def test_sending_with_nobody_listening_is_not_an_error(tmp_path: Path) -> None:
    sender = WakeSender(tmp_path / "nobody.sock")
    sender.send(EVENT, "shop")  # no such socket: dropped
    sender.close()


async def test_a_socket_a_killed_cped_left_is_replaced(pcloud_home: Paths) -> None:
    path = pcloud_home.wake_socket
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stale.bind(str(path))
    stale.close()
    heard: asyncio.Queue[Wake] = asyncio.Queue()
    transport, _ = await listen_for_wakeups(path, heard.put_nowait)
    sender = WakeSender(path)
    try:
        sender.send(EVENT, "shop")
        assert await asyncio.wait_for(heard.get(), WITHIN) == Wake(EVENT, "shop")
    finally:
        sender.close()
        stop_listening(transport, path)
