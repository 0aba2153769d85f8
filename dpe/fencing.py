"""A DPE's last line of self-fencing: a watchdog thread that ends the process.

The engine fences itself on its loop: a DPE that has not renewed its lease
stops acting ``fence_margin`` before the lease can expire (``dpe.engine``).
That needs the loop to run.  A loop stuck in a call that does not return (a
store or driver call hanging on a partitioned network, a blocking bug) would
go on acting once it returns, after a new owner took over.  The watchdog runs
beside the loop, in a thread of its own: the engine arms it with a deadline
half a margin later than its own fence, pushes it on after every renewal,
and disarms it when it halts or shuts down.  If the deadline passes while it
is armed, the watchdog logs why and kills the process (SIGKILL): a dead DPE
acts no more, and everything it knew is in the store; the supervisor starts
another, which adopts once it holds the lease.  Time the whole process did not
run (SIGSTOP, a starved host) does not count against the loop: the watchdog
notices its own late wake-ups and moves the deadline on by as much, and gives
the loop at least ``GRACE`` once it runs again.

A call that may rightly block for a known time is not a stuck loop: on
SQLite, a write waits up to the busy timeout for another process of the host
that holds the write lock (cped stopped in the middle of a write).  The loop
makes such calls ``patient``: the deadline does not fall within one.  While
the lock is held, no other DPE can take the lease either, and the loop does
not act while it waits; once the call returns, the engine looks at its lease
before it acts again (``dpe.engine_lease``).

The thread sleeps until the deadline itself: renewals push the deadline on
without waking it (it looks again when it wakes), so an idle DPE's watchdog
wakes every few seconds, not at every renewal.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger("dpe.fencing")

# A wake-up ABSENT_AFTER later than asked means the whole process did not run for
# a while, when within the sleep is not known: the deadline moves on by the lateness,
# and the loop has at least GRACE after it runs again to renew (or fence itself).
ABSENT_AFTER = 0.5
GRACE = 1.0


def kill_this_process() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class FenceWatchdog:
    def __init__(
        self,
        on_expiry: Callable[[], None] = kill_this_process,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._on_expiry = on_expiry
        self._clock = clock
        self._deadline: float | None = None
        self._fired = False
        self._patient_until: float | None = None  # a patient call runs until at most then
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def arm(self, deadline: float) -> None:
        """Fire at ``deadline`` (monotonic seconds) unless armed again or disarmed first."""
        with self._changed:
            sooner = self._deadline is None or deadline < self._deadline
            self._deadline = deadline
            if sooner:  # a later deadline waits for the next tick: no wake-up per renewal
                self._changed.notify()
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="fence-watchdog", daemon=True)
            self._thread.start()

    def disarm(self) -> None:
        with self._changed:
            self._deadline = None
            self._changed.notify()

    @contextmanager
    def patient(self, seconds: float) -> Iterator[None]:
        """A call that may block up to ``seconds`` without the loop being stuck: the
        deadline does not fall within it (no lock, no wake-up: one per store write)."""
        before = self._patient_until
        self._patient_until = self._clock() + seconds
        try:
            yield
        finally:
            self._patient_until = before

    def _effective_deadline(self) -> float | None:
        deadline, patient_until = self._deadline, self._patient_until
        if deadline is None or patient_until is None:
            return deadline
        return max(deadline, patient_until)

    def check(self) -> bool:
        """Fire if the deadline has passed; whether it fired (once)."""
        with self._changed:
            deadline = self._effective_deadline()
            if deadline is None or self._fired or self._clock() < deadline:
                return False
            self._fired = True
        late = self._clock() - deadline
        log.critical(
            "the lease was not renewed and the loop did not fence itself (%.2f s past the"
            " watchdog's deadline): ending the process so that it acts no more",
            late,
        )
        self._on_expiry()
        return True

    def overslept(self, extra: float) -> None:
        """This thread woke ``extra`` seconds later than it asked.  Beyond
        ``ABSENT_AFTER`` the whole process did not run (stopped, starved): its loop
        was not stuck, it was not run either.  The deadline moves on by as much, and
        to ``GRACE`` from now at least (the stop may have come late in a long sleep),
        so the loop gets its time once it runs again (it looks at its lease before
        it acts)."""
        if extra <= ABSENT_AFTER:
            return
        with self._changed:
            if self._deadline is None:
                return
            self._deadline = max(self._deadline + extra, self._clock() + GRACE)
        log.warning(
            "this DPE did not run for %.1f s: the watchdog's deadline moves on by as much",
            extra,
        )

    def _watch(self) -> None:
        while not self._fired:
            with self._changed:
                deadline = self._effective_deadline()
                wait = None if deadline is None else max(0.0, deadline - self._clock())
                asked_at = self._clock()
                self._changed.wait(wait)
            if wait is not None:
                self.overslept(self._clock() - asked_at - wait)
            self.check()
