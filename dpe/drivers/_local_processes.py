"""A local instance's processes: waiting for its sshd, and killing them all.

The guest init (``_guest_init.py``) starts sshd.  In a PID namespace (as root)
killing the init kills everything inside; otherwise the instance is the init's
session and process group and their descendants, stopped first so that none
can fork a child that escapes the kill.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from dpe.drivers import _procfs
from dpe.drivers._local_instance import InitRecord, InstanceRecord, Layout
from dpe.drivers._sockets import answers_ssh
from foundation.errors import OperationTimeout, Unavailable

KILL_TIMEOUT = 5.0
_POLL = 0.01
SSH_BANNER_TIMEOUT = 1.0
MOST_EXCUSED = 2.0  # of the time a start had: the most a busy host adds to it


class PortTaken(Exception):
    """sshd could not bind its port (taken between choosing and binding): retry."""


class CpuWaits:
    """How long the guest's processes, or this one, waited for a CPU since a start:
    on a busy host (hundreds of instances starting at once) that time does not
    count against the start timeout, up to ``most`` seconds of it.  The longest
    wait of any one process is taken (their waits overlap)."""

    def __init__(
        self,
        init_pid: int,
        most: float,
        delay: Callable[[int], float] = _procfs.run_delay,
        tree: Callable[[int], list[int]] = _procfs.tree,
    ) -> None:
        self.init_pid, self.most = init_pid, most
        self._delay, self._tree = delay, tree
        self._own_before = delay(os.getpid())  # the guest's processes are new: from 0

    def excused(self) -> float:
        guest = max((self._delay(pid) for pid in self._tree(self.init_pid)), default=0.0)
        own = self._delay(os.getpid()) - self._own_before
        return min(self.most, max(guest, own))


async def wait_ready(
    layout: Layout, record: InstanceRecord, init: InitRecord, deadline: float
) -> int:
    """Wait for sshd's banner on its port; returns sshd's pid.  Past the deadline,
    the wait goes on by the time the guest (or dped) waited for a CPU meanwhile,
    up to ``MOST_EXCUSED`` times the time it had: overload is not failure."""
    waits = CpuWaits(init.init_pid, MOST_EXCUSED * max(0.0, deadline - time.monotonic()))
    excused = 0.0
    while True:
        if time.monotonic() >= deadline + excused:
            more = waits.excused()
            if more <= excused:
                break
            excused = more  # the host was busy: that time is given again
        if not _procfs.is_alive(init.init_pid, init.start_time):
            failure = _log_tail(layout.log)
            if "Address already in use" in failure:
                raise PortTaken()
            raise Unavailable(f"{record.assembly}: sshd exited: {failure}")
        if await answers_ssh(record.address, record.port, SSH_BANNER_TIMEOUT):
            return _sshd_pid(init)
        await asyncio.sleep(_POLL)
    await kill_all(init, record.instance_id)
    busy = f" ({excused:.1f} s waiting for a CPU not counted)" if excused >= 0.1 else ""
    raise OperationTimeout(f"{record.assembly}: sshd did not answer within the start timeout{busy}")


def _sshd_pid(init: InitRecord) -> int:
    stats = _procfs.all_stats()
    children = [s for s in _procfs.descendants(init.init_pid, stats) if s.ppid == init.init_pid]
    return children[0].pid if children else 0


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return " | ".join(text.strip().splitlines()[-lines:]) or "(empty log)"


async def kill_all(init: InitRecord, label: str) -> None:
    """SIGKILL the instance's processes and wait (bounded) until none is left.

    In a PID namespace, killing its init kills the rest (the kernel does it).
    Without one, every process is stopped first, so that none can fork a
    child that escapes the kill; then all are killed."""
    if not init.pidns:
        _freeze(init)
    deadline = time.monotonic() + KILL_TIMEOUT
    while True:
        victims = _members(init)
        if not victims:
            return
        _signal_all(victims, signal.SIGKILL)
        if time.monotonic() > deadline:
            pids = ", ".join(str(s.pid) for s in victims)
            raise Unavailable(f"instance {label}: processes still alive after SIGKILL: {pids}")
        await asyncio.sleep(_POLL)


def _freeze(init: InitRecord) -> None:
    """SIGSTOP the instance's processes until no new one appears."""
    stopped: set[int] = set()
    for _ in range(100):
        fresh = [s for s in _members(init) if s.pid not in stopped]
        if not fresh:
            return
        _signal_all(fresh, signal.SIGSTOP)
        stopped |= {s.pid for s in fresh}


def _signal_all(processes: list[_procfs.ProcStat], signum: int) -> None:
    for stat in processes:
        with contextlib.suppress(OSError):
            os.kill(stat.pid, signum)


def _members(init: InitRecord) -> list[_procfs.ProcStat]:
    """The instance's live processes: its init and everything under it."""
    if init.pidns and init.namespace:
        # the namespace dies with its init (the kernel kills and reaps the rest first)
        if not _procfs.is_alive(init.init_pid, init.start_time):
            return []
        return _procfs.in_pid_namespace(init.namespace)
    current = _procfs.read_stat(init.init_pid)
    if current is not None and current.start_time != init.start_time:
        return []  # the pid was reused: the kernel never does so while our group lives
    stats = [s for s in _procfs.all_stats() if s.alive]
    members = {s.pid: s for s in stats if init.init_pid in (s.session, s.pgrp)}
    if current is not None and current.alive:
        members[current.pid] = current
        members |= {s.pid: s for s in _procfs.descendants(init.init_pid, stats)}
    return list(members.values())
