"""Whether a DPE that did not renew its lease had the chance to.

A DPE renews its lease from its event loop every ``lease_renew`` seconds.  A
lease left to expire says that the loop did not run, not why: the DPE hung
(kill it, start another), or the host did not give it a CPU (overload, swap) or
it was stopped (SIGSTOP, a debugger).  Killing a DPE for the host's lateness
takes its guests' watcher away for longer and adds a start-up to a host
already short of CPU.  So, as corosync does for itself ("not scheduled for N
ms"), the supervisor asks the kernel before it acts: ``/proc/PID/schedstat``
counts the time the DPE's main thread (the loop's) waited for a CPU while it
could run, and ``/proc/PID/stat`` says whether it is stopped.

A ``Doubt`` starts when the lease is overdue and is looked at again every
``check_interval``; it adds up the time the DPE could run, the time it waited
for a CPU and the time it was stopped.  The supervisor kills once it could run
long enough to have renewed (or once the doubt has lasted its limit: a DPE
stopped or starved that long is not keeping its deployable either), with this
evidence in the event.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# stopped by a signal or a tracer, or in an uninterruptible wait (disk, swap)
NOT_RUNNABLE = frozenset("TtD")


@dataclass(frozen=True)
class Scheduling:
    """What the kernel says of a process's main thread at one moment."""

    waited: float  # seconds it waited for a CPU while runnable, since it started
    stopped: bool  # stopped or in an uninterruptible wait right now


def process_age(pid: int) -> float | None:
    """Seconds since ``pid`` started: its start in clock ticks after boot
    (``/proc/PID/stat``, field 22) against the time since boot (``/proc/uptime``)."""
    try:
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        since_boot = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, since_boot - ticks / os.sysconf("SC_CLK_TCK"))


def read_scheduling(pid: int) -> Scheduling | None:
    """The kernel's view of ``pid`` (None when it is gone or cannot be read)."""
    try:
        waited_ns = int(Path(f"/proc/{pid}/schedstat").read_text().split()[1])
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError, IndexError):
        return None
    return Scheduling(waited_ns / 1e9, state in NOT_RUNNABLE)


# A process that has just started has waited for nothing yet.
NEWBORN = Scheduling(0.0, False)


@dataclass
class Doubt:
    """A DPE late with its lease, since ``since``: how much of that time it could run."""

    since: float  # monotonic
    at: float  # when it was last looked at
    last: Scheduling | None
    could_run: float = 0.0
    waited: float = 0.0
    stopped: float = 0.0

    @classmethod
    def begin(cls, now: float, seen: Scheduling | None) -> Doubt:
        return cls(now, now, seen)

    def look(self, now: float, seen: Scheduling | None) -> None:
        """Account for the time since the last look.  Without both readings (no
        /proc), all of it counts as time it could run: judged as by the lease alone."""
        elapsed = max(0.0, now - self.at)
        if seen is None or self.last is None:
            self.could_run += elapsed
        elif seen.stopped or self.last.stopped:
            self.stopped += elapsed
        else:
            waited = min(elapsed, max(0.0, seen.waited - self.last.waited))
            self.waited += waited
            self.could_run += elapsed - waited
        self.at, self.last = now, seen

    def lasted(self, now: float) -> float:
        return now - self.since

    def evidence(self, now: float) -> str:
        return (
            f"in the last {self.lasted(now):.1f} s it could run {self.could_run:.1f} s"
            f" (waited {self.waited:.1f} s for a CPU, stopped {self.stopped:.1f} s)"
        )
