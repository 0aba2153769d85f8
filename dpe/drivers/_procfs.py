"""Reading processes from /proc: liveness guarded against pid reuse, trees, namespaces.

A process is identified by its pid *and* its start time (field 22 of
``/proc/PID/stat``, in clock ticks since boot): a pid reused by another
process does not count.  A zombie counts as gone (it runs nothing; who reaps
it, and when, is up to its parent).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
_DEAD_STATES = frozenset("ZXx")


@dataclass(frozen=True)
class ProcStat:
    pid: int
    comm: str
    state: str
    ppid: int
    pgrp: int
    session: int
    start_time: int

    @property
    def alive(self) -> bool:
        return self.state not in _DEAD_STATES


def read_stat(pid: int, proc: Path = PROC) -> ProcStat | None:
    """The process's stat line, or None when there is no such process."""
    try:
        raw = (proc / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    return parse_stat(raw)


def parse_stat(raw: bytes) -> ProcStat | None:
    """Parse a ``/proc/PID/stat`` line (the command name may hold spaces and parentheses)."""
    head, sep, tail = raw.rpartition(b")")
    pid_text, _, comm = head.partition(b" (")
    fields = tail.split()
    if not sep or len(fields) < 20:
        return None
    try:
        return ProcStat(
            pid=int(pid_text),
            comm=comm.decode(errors="replace"),
            state=fields[0].decode(),
            ppid=int(fields[1]),
            pgrp=int(fields[2]),
            session=int(fields[3]),
            start_time=int(fields[19]),
        )
    except ValueError:
        return None


def is_alive(pid: int, start_time: int | None = None, proc: Path = PROC) -> bool:
    """Running (not a zombie) and, when ``start_time`` is given, the same process."""
    stat = read_stat(pid, proc)
    if stat is None or not stat.alive:
        return False
    return start_time is None or stat.start_time == start_time


def run_delay(pid: int, proc: Path = PROC) -> float:
    """Seconds ``pid`` (its main thread) was runnable but waiting for a CPU, since it
    started (the second field of ``/proc/PID/schedstat``); 0 if unknown."""
    try:
        return int((proc / str(pid) / "schedstat").read_bytes().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def tree(root: int, proc: Path = PROC) -> list[int]:
    """``root`` and every process below it."""
    return [root, *(s.pid for s in descendants(root, all_stats(proc)))]


def all_pids(proc: Path = PROC) -> Iterator[int]:
    for entry in os.scandir(proc):
        if entry.name.isdigit():
            yield int(entry.name)


def all_stats(proc: Path = PROC) -> list[ProcStat]:
    return [s for s in (read_stat(pid, proc) for pid in all_pids(proc)) if s is not None]


def descendants(root: int, stats: Iterable[ProcStat]) -> list[ProcStat]:
    """Every process below ``root`` in the parent tree (not ``root`` itself)."""
    children: dict[int, list[ProcStat]] = {}
    for stat in stats:
        children.setdefault(stat.ppid, []).append(stat)
    found: list[ProcStat] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child.pid)
    return found


def pid_namespace(pid: int, proc: Path = PROC) -> str | None:
    """The PID namespace of a process (``pid:[4026531836]``), or None."""
    try:
        return os.readlink(proc / str(pid) / "ns" / "pid")
    except OSError:
        return None


def in_pid_namespace(namespace: str, proc: Path = PROC) -> list[ProcStat]:
    """Every live process whose PID namespace is ``namespace``."""
    return [s for s in all_stats(proc) if s.alive and pid_namespace(s.pid, proc) == namespace]
