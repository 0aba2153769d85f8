"""SSH handshake slots shared by real processes through flock on slot files.

Each holder is a Python process of its own that takes a slot, says so on its
standard output, and keeps it until told (a line on its standard input) or
killed.  The bound is read from ``HandshakeSlots.busy`` and from which
processes say they hold one, never from timings.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from dpe.handshake_slots import HandshakeSlots, SlottedTransport
from dpe.interfaces import Instance
from foundation.errors import OperationTimeout
from foundation.keyfiles import AssemblyKeys

SLOTS = 2
HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from dpe.handshake_slots import HandshakeSlots

    async def main() -> None:
        slots = HandshakeSlots(Path(sys.argv[1]), int(sys.argv[2]))
        async with slots.held(3600.0) as slot:
            print(f"holding {slot}", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        print("released", flush=True)

    asyncio.run(main())
    """
)


class Holder:
    def __init__(self, directory: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(directory), str(SLOTS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def wait_holding(self) -> int:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("holding "), line
        return int(line.split()[1])

    def release(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline() == "released\n"
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def holders(tmp_path: Path) -> Iterator[list[Holder]]:
    started: list[Holder] = []
    yield started
    for holder in started:
        holder.stop()


def test_processes_share_the_bound_and_a_waiter_gets_a_released_slot(
    tmp_path: Path, holders: list[Holder]
) -> None:
    directory = tmp_path / "handshakes"
    holders += [Holder(directory) for _ in range(SLOTS)]
    taken = {holder.wait_holding() for holder in holders}
    assert taken == set(range(SLOTS))
    slots = HandshakeSlots(directory, SLOTS)
    assert slots.busy() == SLOTS
    third = Holder(directory)
    holders.append(third)
    holders[0].release()
    assert third.wait_holding() in range(SLOTS)  # blocks until one is free
    assert slots.busy() == SLOTS


def test_a_process_killed_holding_a_slot_leaves_it_free(
    tmp_path: Path, holders: list[Holder]
) -> None:
    directory = tmp_path / "handshakes"
    holders += [Holder(directory) for _ in range(SLOTS)]
    for holder in holders:
        holder.wait_holding()
    waiter = Holder(directory)
    holders.append(waiter)
    for holder in holders[:SLOTS]:
        holder.stop()  # SIGKILL while holding: the kernel releases its flock
    assert waiter.wait_holding() in range(SLOTS)
    assert HandshakeSlots(directory, SLOTS).busy() == 1


async def test_a_waiter_gives_up_after_its_wait_and_leaves_no_slot_taken(
    tmp_path: Path, holders: list[Holder]
) -> None:
    directory = tmp_path / "handshakes"
    holders += [Holder(directory) for _ in range(SLOTS)]
    for holder in holders:
        holder.wait_holding()
    slots = HandshakeSlots(directory, SLOTS)
    with pytest.raises(OperationTimeout, match="no SSH handshake slot free"):
        async with slots.held(0.2):
            pass
    for holder in holders:
        holder.release()
    while slots.busy():  # the abandoned wait takes its slot, then gives it back
        await asyncio.sleep(0.01)
    async with slots.held(30.0):
        assert slots.busy() == 1
    assert slots.busy() == 0


class CountingTransport:
    """Connections that last until released, counting how many are being made."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0
        self.go = asyncio.Event()

    async def connect(self, instance: Instance, keys: AssemblyKeys, timeout: float) -> object:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await self.go.wait()
        finally:
            self.now -= 1
        return object()


async def test_connections_of_one_process_also_take_turns(tmp_path: Path) -> None:
    inner = CountingTransport()
    transport = SlottedTransport(inner, HandshakeSlots(tmp_path / "handshakes", SLOTS))  # type: ignore[arg-type]
    instance = Instance("i", "d", "a", "127.0.0.1", "a", "127.0.0.1")
    keys = AssemblyKeys(Path("k"), "", Path("h"), "")
    connects = [asyncio.create_task(transport.connect(instance, keys, 60.0)) for _ in range(6)]
    while inner.now < SLOTS:
        await asyncio.sleep(0.01)
    assert inner.most == SLOTS
    inner.go.set()
    await asyncio.gather(*connects)
    assert inner.most == SLOTS
