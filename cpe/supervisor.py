"""cped's DPE supervisor: one ``dped`` per started deployable, kept running.

Every deployable has a ``Slot``, an explicit state machine (``DpeState``)::

    STOPPED --spawn or adopt--> STARTING --holds its lease--> RUNNING
    STOPPED --no turn to start free--> QUEUED --a turn--> STARTING
    RUNNING --desired stopped: SIGTERM--> STOPPING --exits--> STOPPED
    STARTING, RUNNING --exits while wanted--> BACKOFF --delay--> STARTING

The loop (``run``) calls ``tick`` when something happened and sleeps
otherwise: a DPE exited, a request came, a DPE's wake-up (``notice``: it took
its lease, or a deployable whose turn it is stored an event), or the next
deadline came (a back-off, a stop's SIGKILL, a starting DPE's grace, a start's
turn, the earliest lease expiry).  It does not poll: with every DPE running, it
looks at the leases once per ``lease_ttl`` or so, in one read.  ``tick`` reads
the desired states and drives each slot towards its deployable's (the slot and
the seams are in ``cpe.dpe_slot``, what each state does in
``cpe.dpe_reconcile``, turns in ``cpe.dpe_admission``).  All time logic is in
these, on one injectable clock (monotonic time for delays, wall time for
leases, as the DPEs write them); every change is an event in the store's event
log (``dpe-started``, ``dpe-running``, ``dpe-restarting``, ``dpe-adopted``,
``dpe-stopping``, ``dpe-killed``, ``dpe-exited``, ``dpe-left``).

A supervisor whose own loop was late (the host did not schedule cped, or it was
stopped) does not blame its DPEs for it: in the tick that follows, no DPE is
killed for its lease or its grace; they are judged again once they have had a
lease renewal's time to run.  Nor does it blame a DPE for its own lateness: a
DPE late with its lease (or its start) is killed only once the kernel says it
could have run long enough to renew (``cpe.dpe_scheduling``: not stopped, not
waiting for a CPU), or once it has been late ``doubt_limit`` seconds.

How a dead DPE is noticed:

- a child of this cped or an adopted one: at once (the launcher watches a
  pidfd and calls back; the callback only records, ``tick`` acts);
- a hung one by its lease: taken over -> SIGKILL; not renewed although it could
  run -> SIGKILL, with the evidence in the event; the exit is handled like any
  other.

A replacement starts after a capped exponential back-off (``backoff_initial``
doubling up to ``backoff_max``; reset once a DPE has run ``healthy_after``
seconds).  The lease of a DPE known to be dead is released at once (holder
and epoch must match), so its replacement takes it without waiting for it to
expire, with a higher epoch.

With several members (``cpe.membership``), ``owns`` says which deployables
this member runs; the others are ``elsewhere``: nothing is started for them
and a DPE of this member that still runs one is handed over (SIGUSR1: it
releases its lease and exits, leaving everything running; ``dpe-handover``),
and the member that owns it adopts.  A deployable that comes to this member
is checked for instances left behind, as on a first tick.  The loop is also
woken by other members: a member coming or going (``wake``, from the
heartbeats), and on PostgreSQL every member's wake-ups (a lease taken or
released, a desired state changed through another member's API).  A start
that waits for another member's lease looks again when that lease expires.
Turns to start are this member's own.

cped restarting does not stop DPEs (they run in sessions of their own, and
``close`` only stops watching them).  The first ``tick`` of a new cped adopts
every DPE whose lease holder is alive and is a dped of that deployable, and
starts DPEs for the deployables that should run but have none.  Deployables
that should be stopped but have instances left (recorded in the store's
runtime documents) get a DPE that is told to stop them.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Callable
from typing import Any, TypeVar

from cpe.dpe_admission import Turns
from cpe.dpe_reconcile import Reconciler, StoreCall, describe_exit
from cpe.dpe_slot import (
    ELSEWHERE,
    DpeProcess,
    DpeState,
    ExitCallback,
    Launcher,
    Slot,
    SupervisorOptions,
    settle,
)
from foundation.clock import Clock, SystemClock
from foundation.errors import Conflict, PcloudError
from foundation.store import Store
from foundation.wakeup import DESIRED, LEASE, Wake

__all__ = [
    "DpeProcess",
    "DpeState",
    "ExitCallback",
    "Launcher",
    "Slot",
    "StoreCall",
    "Supervisor",
    "SupervisorOptions",
    "describe_exit",
]

log = logging.getLogger("cped.supervisor")

T = TypeVar("T")
LATE = 1.0  # the loop woke this much later than it meant to: cped was not scheduled


class Supervisor:
    def __init__(
        self,
        store: Store,
        launcher: Launcher,
        *,
        in_store: StoreCall | None = None,
        options: Callable[[], SupervisorOptions] | None = None,
        clock: Clock | None = None,
        host: str | None = None,
        on_event: Callable[[], None] | None = None,
        owns: Callable[[str], bool] | None = None,
        holder_gone: Callable[[str], bool] | None = None,
    ) -> None:
        self.store = store
        self._owns = owns or (lambda _name: True)
        self._options = options or SupervisorOptions
        self.clock: Clock = clock or SystemClock()
        self.slots: dict[str, Slot] = {}
        self.turns = Turns()
        self.ticks = 0  # how often it looked (tests and the benchmark)
        self._exits: list[tuple[str, int, int | None]] = []
        self._wake = asyncio.Event()
        self._ticked = False
        self._judge_from = 0.0  # monotonic time from which DPEs are judged again
        host = host or socket.gethostname()  # the member name: lease holders' prefix
        self._reconciler = Reconciler(
            store, launcher, in_store or _direct, self._options, self.clock, host, self._record_exit
        )
        self._reconciler.turns = self.turns
        if on_event is not None:
            self._reconciler.on_event = on_event
        if holder_gone is not None:
            self._reconciler.holder_gone = holder_gone

    @property
    def options(self) -> SupervisorOptions:
        return self._options()

    # =========================================================================
    # requests (from the API, in the loop)

    def start(self, name: str) -> asyncio.Future[dict[str, Any]]:
        """The deployable is wanted (desired state already ``started``); the
        future says what was done once a tick has acted."""
        slot = self._slot(name)
        slot.clear_failed = True
        slot.spawned_clearing = False  # a DPE spawned before this request: check it again
        slot.attempts = slot.refusals = 0
        slot.gave_up = False
        slot.retry_at = min(slot.retry_at, self.clock.monotonic())
        slot.waiting_note = ""
        settle(slot.stops, {"pid": None, "left": [], "note": "started again"})
        return self._request(slot.starts)

    def stop(self, name: str, kill_after: float | None = None) -> asyncio.Future[dict[str, Any]]:
        """Stop it (desired state already ``stopped``); the future is done when no
        DPE runs and nothing is left (or giving up on what is left)."""
        slot = self._slot(name)
        slot.stop_timeout = kill_after
        slot.check_left = True
        slot.attempts = 0
        slot.clear_failed = False
        slot.retry_at = min(slot.retry_at, self.clock.monotonic())
        settle(slot.starts, {"pid": None, "note": "stopped again"})
        if slot.state is DpeState.STOPPING and kill_after is not None:
            slot.kill_at = min(slot.kill_at, slot.since_stop + kill_after)
        return self._request(slot.stops)

    def reload(self, name: str) -> dict[str, Any]:
        """Tell the DPE to read the document again (SIGHUP), now or once it can."""
        slot = self.slots.get(name)
        state = slot.state if slot else DpeState.STOPPED
        if slot is None or state in (DpeState.STOPPED, DpeState.STOPPING):
            raise Conflict(
                f"deployable {name!r} is not running: nothing to reload (start it)",
                deployable=name,
            )
        if state is DpeState.RUNNING and slot.process is not None:
            slot.process.signal(signal.SIGHUP)
            return {"pid": slot.process.pid, "note": "the DPE re-reads the document"}
        if state is DpeState.STARTING and slot.process is not None:
            slot.reload_pending = True
            note = "the DPE is starting: it is told to reload once it holds its lease"
            return {"pid": slot.process.pid, "note": note}
        wait = max(0.0, slot.retry_at - self.clock.monotonic())
        note = f"no DPE runs right now: the next one (in {wait:.1f} s) reads the new document"
        return {"pid": None, "note": note}

    def tell_requests(self, name: str) -> str:
        """Have the DPE read the requests recorded for it (SIGUSR2), now or once it can;
        what will happen, in a few words."""
        slot = self.slots.get(name)
        state = slot.state if slot else DpeState.STOPPED
        if slot is not None and slot.process is not None and state is DpeState.RUNNING:
            slot.process.signal(signal.SIGUSR2)
            return f"the DPE (pid {slot.process.pid}) is doing it"
        if slot is not None and state is DpeState.STARTING:
            slot.requests_pending = True
            return "the DPE is starting: it does it once it holds its lease"
        return "no DPE runs right now: the next one does it"

    def info(self, name: str) -> dict[str, Any]:
        """The supervisor's view of a deployable's DPE, for status."""
        slot = self.slots.get(name)
        if slot is None:
            return {"pid": None, "alive": False, "supervision": str(DpeState.STOPPED)}
        now = self.clock.monotonic()
        process = slot.process
        data: dict[str, Any] = {
            "pid": process.pid if process else None,
            "alive": process is not None,
            "supervision": str(slot.state),
            "adopted": bool(process and not process.child),
            "restarts": slot.attempts,
        }
        if process is not None:
            data["uptime"] = round(now - slot.started, 3)
        if slot.state is DpeState.BACKOFF:
            data["restart_in"] = round(max(0.0, slot.retry_at - now), 3)
        if slot.waiting_note:
            data["note"] = slot.waiting_note
        return data

    def notice(self, wake: Wake) -> None:
        """A DPE's wake-up: tick if it may change what the supervisor does."""
        slot = self.slots.get(wake.deployable)
        if slot is None:
            return
        if wake.kind in (LEASE, DESIRED) or self.turns.woken(wake.deployable):
            self._wake.set()

    def _slot(self, name: str) -> Slot:
        slot = self.slots.setdefault(name, Slot(name))
        self._wake.set()
        return slot

    def _request(self, waiters: list[asyncio.Future[dict[str, Any]]]) -> asyncio.Future[Any]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        waiters.append(future)
        self._wake.set()
        return future

    # =========================================================================
    # the loop

    async def run(self) -> None:
        """Supervise until cancelled; a failing tick is logged and retried."""
        while True:
            self._wake.clear()
            try:
                await self.tick()
            except PcloudError as error:
                log.error("supervision: %s (trying again)", error)
            except Exception:
                log.exception("supervision failed (trying again)")
            wait = self._next_wait()
            meant = self.clock.monotonic() + wait
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except TimeoutError:
                self._check_late(self.clock.monotonic() - meant)

    def _check_late(self, late: float) -> None:
        """Woken ``late`` seconds after it meant to: if cped was not scheduled, its
        DPEs probably were not either; give them a renewal's time before judging."""
        if late < LATE:
            return
        options = self.options
        self._judge_from = self.clock.monotonic() + options.lease_renew + options.check_interval
        log.warning(
            "supervision ran %.1f s late (cped was not scheduled): DPEs are judged"
            " on their leases again in %.1f s",
            late,
            options.lease_renew + options.check_interval,
        )

    def wake(self) -> None:
        """Tick again soon (membership changed)."""
        self._wake.set()

    def close(self) -> None:
        """cped is stopping: stop watching; every DPE keeps running."""
        for slot in self.slots.values():
            if slot.process is not None:
                slot.process.detach()
            for future in [*slot.starts, *slot.stops]:
                future.cancel()
        running = sum(1 for s in self.slots.values() if s.process is not None)
        if running:
            log.info("leaving %d DPE(s) running (a new cped adopts them)", running)

    def _next_wait(self) -> float:
        """Seconds until the next deadline of any slot or turn (a DPE's wake-up,
        an exit or a request may come sooner)."""
        options = self.options
        now, wall = self.clock.monotonic(), self.clock.time()
        waits = [options.idle_look]
        for slot in self.slots.values():
            waits += _deadlines(slot, options, now, wall)
        turns = self.turns.next_look(now, options.check_interval, options.start_turn)
        if turns is not None:
            waits.append(turns)
        wait = min(waits)
        if now < self._judge_from:  # nothing is judged before then: no need to look
            wait = max(wait, self._judge_from - now)
        return max(wait, 0.01)

    async def tick(self) -> None:
        """Handle the exits recorded, then drive every slot towards its desired state."""
        self.ticks += 1
        desired = await self._reconciler.db(self.store.desired_states)
        await self._reconciler.read_leases()
        self._reconciler.judging = self.clock.monotonic() >= self._judge_from
        first, self._ticked = not self._ticked, True
        for name in desired:
            if name not in self.slots:
                self.slots[name] = Slot(name, check_left=first)
            elif first:
                self.slots[name].check_left = True
        desired = self._placed(desired)
        while self._exits:  # one at a time: one the store failed on is handled next tick
            name, generation, status = self._exits[0]
            slot = self.slots.get(name)
            if slot is not None and slot.generation == generation and slot.process is not None:
                await self._reconciler.exited(slot, status, desired.get(name))
            self._exits.pop(0)
        await self._settle_turns()
        for slot in list(self.slots.values()):
            try:
                await self._reconcile(slot, desired.get(slot.name))
            except PcloudError as error:  # one deployable's trouble does not stall the others
                log.error("deployable=%s: supervision: %s (trying again)", slot.name, error)

    def _placed(self, desired: dict[str, str]) -> dict[str, str]:
        """The desired states, ``elsewhere`` for deployables another member runs."""
        placed = {}
        for name, want in desired.items():
            here, slot = self._owns(name), self.slots[name]
            if here and not slot.here:
                slot.check_left = True  # it comes here: look for what it left behind
            slot.here = here
            placed[name] = want if here else ELSEWHERE
        return placed

    async def _settle_turns(self) -> None:
        """Give back the turns of starts that have settled, are over, or took too long."""
        options, now = self.options, self.clock.monotonic()
        for name in self.turns.overdue(now, options.start_turn):
            self.turns.give_back(name)
            log.warning(
                "deployable=%s: not settled after %g s of starting: the next one gets its turn",
                name,
                options.start_turn,
            )
        for name in self.turns.due(now, options.check_interval):
            slot = self.slots.get(name)
            if slot is None or slot.state not in (DpeState.STARTING, DpeState.RUNNING):
                self.turns.give_back(name)
                continue
            after = self.turns.turns[name].after_id
            events = await self._reconciler.db(self._events_after, name, after)
            if self.turns.read(name, events, now):
                self.turns.give_back(name)

    def _events_after(self, name: str, after_id: int) -> list[Any]:
        return self.store.query_events(deployable=name, after_id=after_id, limit=1000)

    def _record_exit(self, name: str, generation: int, status: int | None) -> None:
        """Called by the launcher when a DPE exits: only record; ``tick`` acts."""
        self._exits.append((name, generation, status))
        self._wake.set()

    async def _reconcile(self, slot: Slot, desired: str | None) -> None:
        await self._reconciler.reconcile(slot, desired)
        if desired is None and slot.state is DpeState.STOPPED and not slot.check_left:
            settle(slot.stops, slot.stopped_answer([]))
            settle(slot.starts, {"pid": None, "note": "the deployable was deleted"})
            self.slots.pop(slot.name, None)
            self.turns.give_back(slot.name)


def _deadlines(slot: Slot, options: SupervisorOptions, now: float, wall: float) -> list[float]:
    """Seconds until each time this slot needs a look (monotonic and wall deadlines)."""
    if slot.state is DpeState.BACKOFF:
        return [slot.retry_at - now]
    if slot.state in (DpeState.STOPPED, DpeState.QUEUED) and slot.held_until > wall:
        return [slot.held_until - wall]  # another's lease: a look once it has expired
    if slot.doubt is not None and not slot.killed:  # late: looked at again and again
        again = [slot.doubt.at + options.check_interval - now]
        return again + ([slot.kill_at - now] if slot.state is DpeState.STOPPING else [])
    if slot.state is DpeState.STARTING and not slot.killed:
        # its wake-up says when it holds the lease; this looks in case one was lost
        return [options.check_interval, slot.since + options.start_grace - now]
    if slot.state is DpeState.STOPPING and not slot.killed:
        return [slot.kill_at - now] + ([slot.lease_due - wall] if slot.lease_due else [])
    if slot.state is DpeState.RUNNING and not slot.killed and slot.lease_due:
        return [slot.lease_due - wall]
    return []


async def _direct(fn: Callable[..., T], *args: Any) -> T:
    return fn(*args)
