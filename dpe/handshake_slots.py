"""A host-wide bound on SSH key exchanges: slot files held with ``flock``.

Connecting to an instance is the costly step of a DPE's start (the key
exchange and the client key's signature).  Hundreds of DPEs connecting at once
starve each other past their timeouts, so every dped of the host shares
``[dped] ssh_handshakes_at_once`` slots: files ``slot-0``, ``slot-1``...  in
``Paths.handshake_dir``, each held with ``flock(LOCK_EX)`` on a descriptor of
its own for the length of one handshake.

Why ``flock`` on files: the kernel releases the lock when its descriptor is
closed, whether the process closes it or dies, so a dped killed in the middle
of a handshake never keeps a slot (a POSIX semaphore would stay taken); the
descriptor is close-on-exec, so the guests a DPE starts never inherit it.  Two
descriptors of one process exclude each other like two processes do (a flock
belongs to the open file, not to the process).

Waiting: a free slot is taken at once if there is one; otherwise the waiter
blocks on one slot (chosen at random) in a daemon thread of its own (``flock``
has no timeout and no asyncio form), so waiting costs no CPU and never keeps
the process from exiting.  A waiter that gives up (cancelled, or past its wait)
leaves that thread blocked; the slot it gets later is released at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import random
import threading
from collections.abc import AsyncIterator
from pathlib import Path

from dpe.interfaces import Connection, Instance, Transport
from foundation.errors import OperationTimeout
from foundation.keyfiles import AssemblyKeys

WAIT_SHARE = 0.5  # of a connection's timeout, the most spent waiting for a slot


class HandshakeSlots:
    def __init__(self, directory: Path, count: int) -> None:
        self.directory = directory
        self.count = count

    @contextlib.asynccontextmanager
    async def held(self, wait: float) -> AsyncIterator[int]:
        """Hold a slot for the block (its number); ``OperationTimeout`` after ``wait`` s."""
        slot, fd = await self._take(wait)
        try:
            yield slot
        finally:
            os.close(fd)  # releases the flock

    def busy(self) -> int:
        """How many slots are held right now, by any process (a snapshot)."""
        held = 0
        for slot in range(self.count):
            fd = self._open(slot)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                held += 1
            finally:
                os.close(fd)
        return held

    async def _take(self, wait: float) -> tuple[int, int]:
        for slot in random.sample(range(self.count), self.count):
            fd = self._open(slot)
            if _try_lock(fd):
                return slot, fd
            os.close(fd)
        return await self._wait_for(random.randrange(self.count), wait)

    async def _wait_for(self, slot: int, wait: float) -> tuple[int, int]:
        fd = self._open(slot)
        waiter = _Waiter(fd, asyncio.get_running_loop())
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), wait)
        except TimeoutError:
            waiter.abandon()
            raise OperationTimeout(
                f"no SSH handshake slot free within {wait:g} s"
                f" ({self.count} handshakes at once on this host)"
            ) from None
        except asyncio.CancelledError:
            waiter.abandon()
            raise
        except OSError:
            os.close(fd)
            raise
        return slot, fd

    def _open(self, slot: int) -> int:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
        return os.open(self.directory / f"slot-{slot}", flags, 0o600)


class _Waiter:
    """``flock(fd, LOCK_EX)`` in a daemon thread; ``future`` is done once it holds.

    Not the loop's executor: a blocked waiter must never take a thread that a
    holder needs (asyncssh resolves addresses there), nor keep the process
    alive.  Once abandoned, the lock is released as soon as it is obtained."""

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop) -> None:
        self.fd = fd
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.abandoned = False
        threading.Thread(target=self._lock, name="handshake-wait", daemon=True).start()

    def abandon(self) -> None:
        self.abandoned = True

    def _lock(self) -> None:
        error: OSError | None = None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except OSError as failure:
            error = failure
        try:
            self.loop.call_soon_threadsafe(self._done, error)
        except RuntimeError:  # the loop is closed: nobody will use the slot
            os.close(self.fd)

    def _done(self, error: OSError | None) -> None:
        if self.abandoned:
            os.close(self.fd)
        elif error is not None:
            self.future.set_exception(error)
        else:
            self.future.set_result(None)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class SlottedTransport:
    """A transport whose connections each hold a handshake slot while they are made.

    The wait for a slot takes at most ``WAIT_SHARE`` of the connection's timeout,
    so the key exchange itself always has the rest."""

    def __init__(self, transport: Transport, slots: HandshakeSlots) -> None:
        self.transport = transport
        self.slots = slots

    async def connect(self, instance: Instance, keys: AssemblyKeys, timeout: float) -> Connection:
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with self.slots.held(timeout * WAIT_SHARE):
            left = timeout - (loop.time() - started)
            return await self.transport.connect(instance, keys, left)
