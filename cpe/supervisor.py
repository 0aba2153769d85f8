"""cped's DPE supervisor: one ``dped`` per started deployable, kept running.

Every deployable has a ``Slot``, an explicit state machine (``DpeState``)::

    STOPPED --spawn or adopt--> STARTING --holds its lease--> RUNNING
    RUNNING --desired stopped: SIGTERM--> STOPPING --exits--> STOPPED
    STARTING, RUNNING --exits while wanted--> BACKOFF --delay--> STARTING

The loop (``run``) calls ``tick`` when something happened (a DPE exited, a
request came) and at least every ``check_interval``; ``tick`` reads the
desired states and drives each slot towards its deployable's.  All time logic
is here, on an injectable clock (monotonic time for delays, wall time for
leases, as the DPEs write them); every change is an event in the store's
event log (``dpe-started``, ``dpe-running``, ``dpe-restarting``,
``dpe-adopted``, ``dpe-stopping``, ``dpe-killed``, ``dpe-exited``,
``dpe-left``).

How a dead DPE is noticed:

- a child of this cped or an adopted one: at once (the launcher watches a
  pidfd and calls back; the callback only records, ``tick`` acts);
- a hung one by its lease: not renewed (or taken over) -> SIGKILL, and the exit
  is handled like any other.

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
is checked for instances left behind, as on a first tick.

cped restarting does not stop DPEs (they run in sessions of their own, and
``close`` only stops watching them).  The first ``tick`` of a new cped adopts
every DPE whose lease holder is alive and is a dped of that deployable, and
starts DPEs for the deployables that should run but have none.  Deployables
that should be stopped but have instances left (recorded in the store's
runtime documents) get a DPE that is told to stop them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from typing import Any, Protocol, TypeVar

from foundation.clock import Clock, SystemClock
from foundation.config import Config
from foundation.errors import Conflict, PcloudError
from foundation.events import Event
from foundation.runtime_kinds import INSTANCE
from foundation.store import Store

log = logging.getLogger("cped.supervisor")

T = TypeVar("T")
StoreCall = Callable[..., Awaitable[Any]]  # runs a store method off the loop
ExitCallback = Callable[[int | None], None]
STARTED = "started"
ELSEWHERE = "elsewhere"  # run by another member: nothing to do here
MAX_EXPONENT = 60  # 2**60 times any sane initial delay is past any cap


class DpeProcess(Protocol):
    pid: int
    child: bool  # a child of this cped (its exit status is known)

    def signal(self, signum: int) -> bool:
        """Send ``signum``; False if the process has already exited."""
        ...

    def detach(self) -> None:
        """Stop watching it; it keeps running."""
        ...


class Launcher(Protocol):
    def spawn(self, deployable: str, *, clear_failed: bool, on_exit: ExitCallback) -> DpeProcess:
        """Start a DPE in a session of its own (OSError if it cannot start)."""
        ...

    def attach(self, deployable: str, pid: int, on_exit: ExitCallback) -> DpeProcess | None:
        """Watch a running DPE of ``deployable``; None if ``pid`` is not one
        (OSError if it is one but cannot be watched)."""
        ...

    def last_words(self, deployable: str) -> str:
        """The last line a DPE of ``deployable`` wrote to its log ("" if none)."""
        ...


class DpeState(StrEnum):
    STOPPED = "stopped"  # no DPE
    STARTING = "starting"  # a DPE runs but does not hold the lease yet
    RUNNING = "running"  # a DPE holds the lease
    STOPPING = "stopping"  # told to stop the deployable (SIGTERM); SIGKILL at kill_at
    BACKOFF = "backoff"  # the DPE died; the next one is due at retry_at


@dataclass(frozen=True)
class SupervisorOptions:
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    healthy_after: float = 10.0  # a DPE that ran this long resets the back-off
    lease_ttl: float = 5.0
    lease_renew: float = 1.0
    stop_timeout: float = 60.0  # how long a DPE may take to stop before SIGKILL
    stop_attempts: int = 3  # DPEs run to stop instances left behind, before giving up
    python_start: float = 10.0  # allowance for a DPE's start before it can take a lease
    handover_timeout: float = 15.0  # how long a DPE may take to hand over before SIGKILL

    @classmethod
    def from_config(cls, config: Config) -> SupervisorOptions:
        return cls(
            backoff_initial=config.cped.dpe_backoff_initial,
            backoff_max=config.cped.dpe_backoff_max,
            lease_ttl=config.cped.lease_ttl,
            lease_renew=config.dped.lease_renew_interval,
        )

    @property
    def check_interval(self) -> float:
        """How often leases are looked at (exits are noticed at once anyway)."""
        return min(0.5, self.lease_ttl / 4)

    @property
    def start_grace(self) -> float:
        """How long a new DPE may take to hold its lease (dped waits ttl + 2 renewals)."""
        return self.lease_ttl + 2 * self.lease_renew + self.python_start

    def backoff(self, attempt: int) -> float:
        """The delay before restart number ``attempt`` (1, 2, ...)."""
        exponent = min(max(attempt - 1, 0), MAX_EXPONENT)
        return float(min(self.backoff_max, self.backoff_initial * 2**exponent))


@dataclass
class Slot:
    """One deployable's DPE, as the supervisor keeps it."""

    name: str
    state: DpeState = DpeState.STOPPED
    process: DpeProcess | None = None
    generation: int = 0  # which process an exit report is about
    since: float = 0.0  # monotonic time the process was spawned or adopted
    epoch: int | None = None  # its lease epoch, once it holds the lease
    attempts: int = 0  # consecutive failed runs
    retry_at: float = 0.0
    since_stop: float = 0.0  # when SIGTERM was sent
    kill_at: float = 0.0
    killed: bool = False  # SIGKILL sent to the current process
    replace: bool = False  # killed on purpose: the replacement starts at once
    clear_failed: bool = False  # a start request: the next DPE clears "failed"
    spawned_clearing: bool = False  # the current process was started with --clear-failed
    reload_pending: bool = False  # SIGHUP once the starting DPE holds its lease
    check_left: bool = False  # look for instances left behind when no DPE runs
    stop_timeout: float | None = None  # this stop request's own SIGKILL deadline
    here: bool = True  # this member runs the deployable (else: elsewhere)
    handing_over: bool = False  # told to hand over (SIGUSR1)
    last: dict[str, Any] = field(default_factory=dict)  # the last DPE: pid, exit, killed
    waiting_note: str = ""  # why no DPE is started (logged once)
    starts: list[asyncio.Future[dict[str, Any]]] = field(default_factory=list)
    stops: list[asyncio.Future[dict[str, Any]]] = field(default_factory=list)


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
        owns: Callable[[str], bool] | None = None,
        holder_gone: Callable[[str], bool] | None = None,
    ) -> None:
        self.store = store
        self._owns = owns or (lambda _name: True)
        # a lease holder whose member is gone: its DPE is spawned at once and waits
        # for the expiry itself, so that it is ready the moment the lease is free
        self._holder_gone = holder_gone or (lambda _holder: False)
        self.launcher = launcher
        self._in_store = in_store or _direct
        self._options = options or SupervisorOptions
        self.clock: Clock = clock or SystemClock()
        self.host = host or socket.gethostname()  # the member name: lease holders' prefix
        self.slots: dict[str, Slot] = {}
        self._exits: list[tuple[str, int, int | None]] = []
        self._wake = asyncio.Event()
        self._ticked = False

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
        slot.attempts = 0
        slot.retry_at = min(slot.retry_at, self.clock.monotonic())
        slot.waiting_note = ""
        self._settle(slot.stops, {"pid": None, "left": [], "note": "started again"})
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
        self._settle(slot.starts, {"pid": None, "note": "stopped again"})
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
            data["uptime"] = round(now - slot.since, 3)
        if slot.state is DpeState.BACKOFF:
            data["restart_in"] = round(max(0.0, slot.retry_at - now), 3)
        if slot.waiting_note:
            data["note"] = slot.waiting_note
        return data

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
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._next_wait())

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
        wait = self.options.check_interval
        now = self.clock.monotonic()
        for slot in self.slots.values():
            if slot.state is DpeState.BACKOFF:
                wait = min(wait, slot.retry_at - now)
            elif slot.state is DpeState.STOPPING and not slot.killed:
                wait = min(wait, slot.kill_at - now)
        return max(wait, 0.01)

    async def tick(self) -> None:
        """Handle the exits recorded, then drive every slot towards its desired state."""
        desired = await self._db(_desired_states, self.store)
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
                await self._exited(slot, status, desired.get(name))
            self._exits.pop(0)
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

    def _record_exit(self, name: str, generation: int, status: int | None) -> None:
        """Called by the launcher when a DPE exits: only record; ``tick`` acts."""
        self._exits.append((name, generation, status))
        self._wake.set()

    async def _reconcile(self, slot: Slot, desired: str | None) -> None:
        if slot.state is DpeState.STOPPED:
            await self._when_stopped(slot, desired)
        elif slot.state is DpeState.BACKOFF:
            await self._when_backing_off(slot, desired)
        elif slot.state is DpeState.STARTING:
            await self._when_starting(slot, desired)
        elif slot.state is DpeState.RUNNING:
            await self._when_running(slot, desired, await self._lease(slot.name))
        else:
            await self._when_stopping(slot)
        if desired is None and slot.state is DpeState.STOPPED and not slot.check_left:
            self._settle(slot.stops, self._stopped_answer(slot, []))
            self._settle(slot.starts, {"pid": None, "note": "the deployable was deleted"})
            self.slots.pop(slot.name, None)

    # =========================================================================
    # each state

    async def _when_stopped(self, slot: Slot, desired: str | None) -> None:
        if desired == ELSEWHERE:
            slot.check_left = False  # the member that runs it cleans up
            note = {"pid": None, "elsewhere": True, "note": "another member runs it"}
            self._settle(slot.starts, note)
            self._settle(slot.stops, note | {"left": []})
        elif desired == STARTED:
            await self._launch(slot)
        elif slot.check_left:
            await self._clean_up(slot)
        else:
            self._settle(slot.stops, self._stopped_answer(slot, []))

    async def _when_backing_off(self, slot: Slot, desired: str | None) -> None:
        if self.clock.monotonic() < slot.retry_at:
            return
        if desired == STARTED:
            await self._launch(slot)
        else:
            slot.state = DpeState.STOPPED
            await self._when_stopped(slot, desired)

    async def _when_starting(self, slot: Slot, desired: str | None) -> None:
        assert slot.process is not None
        if desired == ELSEWHERE and not slot.killed:
            await self._hand_over(slot)
            return
        lease = await self._lease(slot.name)
        if self._holds(lease, slot.process):
            assert lease is not None
            slot.state, slot.epoch = DpeState.RUNNING, int(lease["epoch"])
            pid = slot.process.pid
            await self._event(
                slot, "dpe-running", f"dpe (pid {pid}) holds the lease (epoch {slot.epoch})"
            )
            if slot.spawned_clearing:
                slot.clear_failed = slot.spawned_clearing = False
                self._settle(slot.starts, {"pid": pid, "note": "the DPE is running"})
            await self._when_running(slot, desired, lease)
            return
        grace = self.options.start_grace
        if not slot.killed and self.clock.monotonic() - slot.since > grace:
            reason = f"dpe (pid {slot.process.pid}) did not take its lease within {grace:g} s"
            await self._kill(slot, reason)

    async def _when_running(
        self, slot: Slot, desired: str | None, lease: dict[str, Any] | None
    ) -> None:
        assert slot.process is not None
        if slot.killed:
            return  # its exit is on the way
        if self._lease_lost(lease, slot.process):
            await self._kill(slot, self._lost_reason(slot, lease))
        elif desired == ELSEWHERE:
            await self._hand_over(slot)
        elif desired != STARTED:
            await self._terminate(slot)
        elif slot.clear_failed:
            await self._clear_failed(slot)
        if slot.reload_pending and slot.state is DpeState.RUNNING and not slot.killed:
            slot.reload_pending = False
            slot.process.signal(signal.SIGHUP)

    async def _when_stopping(self, slot: Slot) -> None:
        if slot.killed or slot.process is None:
            return
        if self.clock.monotonic() >= slot.kill_at:
            waited = slot.kill_at - slot.since_stop
            pid = slot.process.pid
            await self._kill(slot, f"dpe (pid {pid}) did not stop within {waited:g} s")
            return
        lease = await self._lease(slot.name)
        if self._holds_stale(lease, slot.process):  # hung: it is not stopping anything
            await self._kill(slot, self._lost_reason(slot, lease))

    # =========================================================================
    # actions

    async def _launch(self, slot: Slot, why: str = "") -> None:
        """A DPE for the slot: adopt the lease holder if one lives, else spawn."""
        if await self._adopt(slot):
            return
        lease = await self._lease(slot.name)
        held = lease and lease["holder"] and lease["expires_at"] > self.clock.time()
        if held and lease and not self._holder_gone(lease["holder"]):
            note = f"its lease is held by {lease['holder']}: waiting for it to expire"
            if slot.waiting_note != note:
                slot.waiting_note = note
                log.warning("deployable=%s: %s", slot.name, note)
            self._settle(slot.starts, {"pid": None, "note": note})
            return
        slot.waiting_note = ""
        if held and lease:
            why = why or f"its lease holder {lease['holder']} is gone: the DPE takes it at expiry"
        await self._spawn(slot, why)

    async def _adopt(self, slot: Slot) -> bool:
        """Watch the live DPE holding the deployable's lease on this host, if any.

        True when a live DPE holds the lease: adopted, or (rarely) one that
        cannot be watched, which is then left to its lease: nothing is started
        beside it.  A dead holder's lease is released."""
        lease = await self._lease(slot.name)
        if not lease or not lease["holder"] or not self._on_this_host(lease["holder"]):
            return False
        generation = slot.generation + 1
        on_exit = partial(self._record_exit, slot.name, generation)
        try:
            process = self.launcher.attach(slot.name, int(lease["pid"]), on_exit)
        except OSError as error:  # a live DPE that cannot be watched: never start another
            note = f"cannot watch dpe {lease['holder']} ({error}): waiting for its lease to expire"
            if slot.waiting_note != note:
                slot.waiting_note = note
                log.error("deployable=%s: %s", slot.name, note)
            return True
        if process is None:  # its holder is dead: free the lease for the next one
            await self._db(self.store.release_lease, slot.name, lease["holder"], lease["epoch"])
            log.info("deployable=%s: released the lease of %s (gone)", slot.name, lease["holder"])
            return False
        self._watch(slot, process, generation, DpeState.RUNNING)
        slot.epoch = int(lease["epoch"])
        reason = f"adopted the running dpe (pid {process.pid}, lease epoch {slot.epoch})"
        await self._event(slot, "dpe-adopted", reason)
        if not slot.clear_failed:  # else answered once it is known not to have failed
            self._settle(slot.starts, {"pid": process.pid, "note": "already running"})
        return True

    async def _spawn(self, slot: Slot, why: str = "") -> None:
        generation = slot.generation + 1
        clearing = slot.clear_failed
        try:
            process = self.launcher.spawn(
                slot.name,
                clear_failed=clearing,
                on_exit=partial(self._record_exit, slot.name, generation),
            )
        except OSError as error:
            slot.attempts += 1
            delay = self.options.backoff(slot.attempts)
            slot.state, slot.retry_at = DpeState.BACKOFF, self.clock.monotonic() + delay
            reason = f"cannot start dped: {error}; trying again in {delay:.1f} s"
            await self._event(slot, "dpe-restarting", f"{reason} (attempt {slot.attempts})")
            self._settle(slot.starts, {"pid": None, "note": reason})
            return
        self._watch(slot, process, generation, DpeState.STARTING)
        slot.spawned_clearing = clearing
        text = f"dpe started (pid {process.pid})"
        if clearing:
            text += " on a start request"
        await self._event(slot, "dpe-started", f"{text}{': ' + why if why else ''}")
        self._settle(slot.starts, {"pid": process.pid, "note": "a DPE was started"})

    def _watch(self, slot: Slot, process: DpeProcess, generation: int, state: DpeState) -> None:
        slot.process, slot.generation, slot.state = process, generation, state
        slot.since = self.clock.monotonic()
        slot.epoch = None
        slot.killed = slot.replace = slot.spawned_clearing = slot.handing_over = False

    async def _terminate(self, slot: Slot) -> None:
        assert slot.process is not None
        slot.state = DpeState.STOPPING
        slot.since_stop = self.clock.monotonic()
        slot.kill_at = slot.since_stop + (slot.stop_timeout or self.options.stop_timeout)
        slot.process.signal(signal.SIGTERM)
        reason = f"dpe (pid {slot.process.pid}) is stopping the deployable (SIGTERM)"
        await self._event(slot, "dpe-stopping", reason)

    async def _hand_over(self, slot: Slot) -> None:
        """Another member runs it now: the DPE releases its lease and exits (SIGUSR1),
        leaving instances and resources running for that member to adopt."""
        assert slot.process is not None
        slot.state, slot.handing_over = DpeState.STOPPING, True
        slot.since_stop = self.clock.monotonic()
        slot.kill_at = slot.since_stop + self.options.handover_timeout
        slot.process.signal(signal.SIGUSR1)
        reason = f"dpe (pid {slot.process.pid}) hands over to the member that runs it now"
        await self._event(slot, "dpe-handover", reason)

    async def _kill(self, slot: Slot, reason: str) -> None:
        assert slot.process is not None
        slot.killed = True
        slot.process.signal(signal.SIGKILL)
        await self._event(slot, "dpe-killed", f"{reason}: killed (SIGKILL)")

    async def _clear_failed(self, slot: Slot) -> None:
        """A start request on a running DPE: replace it if the deployable had failed."""
        assert slot.process is not None
        recorded = await self._db(_recorded_state, self.store, slot.name)
        if recorded != "failed":
            slot.clear_failed = False
            self._settle(slot.starts, {"pid": slot.process.pid, "note": "already running"})
            return
        slot.replace = True
        reason = f"the deployable had failed: replacing dpe (pid {slot.process.pid})"
        await self._kill(slot, reason + " to clear it")

    async def _clean_up(self, slot: Slot) -> None:
        """Desired stopped and no DPE: stop whatever a dead DPE left running."""
        if await self._adopt(slot):
            return  # a live DPE: the next tick tells it to stop
        left = await self._db(_instances_left, self.store, slot.name)
        if not left:
            slot.check_left, slot.attempts = False, 0
            self._settle(slot.stops, self._stopped_answer(slot, []))
            return
        if slot.attempts >= self.options.stop_attempts:
            slot.check_left = False
            reason = (
                f"instances of {', '.join(left)} are left: {slot.attempts} DPEs could not stop them"
            )
            await self._event(slot, "dpe-left", reason)
            self._settle(slot.stops, self._stopped_answer(slot, left))
            return
        await self._spawn(slot, f"to stop what is left ({', '.join(left)})")

    async def _exited(self, slot: Slot, status: int | None, desired: str | None) -> None:
        assert slot.process is not None
        pid, ran = slot.process.pid, self.clock.monotonic() - slot.since
        await self._release_lease(slot.name, pid)
        failed = slot.killed or status not in (0, None)
        how = describe_exit(status)
        if status is not None and status > 0 and not slot.killed:
            words = self.launcher.last_words(slot.name)
            how += f" ({words})" if words else ""
        slot.last = {"pid": pid, "exit": how, "killed": slot.killed}
        slot.process = None
        if slot.handing_over or desired == ELSEWHERE:
            slot.state, slot.handing_over, slot.check_left = DpeState.STOPPED, False, False
            await self._event(slot, "dpe-exited", f"dpe (pid {pid}) exited with {how}")
            return
        if desired != STARTED:
            await self._exited_unwanted(slot, pid, failed)
            return
        if slot.replace or slot.state is DpeState.STOPPING:
            delay = 0.0  # replaced on purpose, or started again while it stopped
        else:
            slot.attempts = 1 if ran >= self.options.healthy_after else slot.attempts + 1
            delay = self.options.backoff(slot.attempts)
        slot.state, slot.retry_at = DpeState.BACKOFF, self.clock.monotonic() + delay
        reason = f"dpe (pid {pid}) exited with {slot.last['exit']}; restarting in {delay:.1f} s"
        await self._event(slot, "dpe-restarting", f"{reason} (attempt {slot.attempts})")

    async def _exited_unwanted(self, slot: Slot, pid: int, failed: bool) -> None:
        slot.check_left = True
        await self._event(slot, "dpe-exited", f"dpe (pid {pid}) exited with {slot.last['exit']}")
        if not failed:
            slot.state = DpeState.STOPPED
            return
        slot.attempts += 1
        delay = self.options.backoff(slot.attempts)
        slot.state, slot.retry_at = DpeState.BACKOFF, self.clock.monotonic() + delay

    async def _release_lease(self, name: str, pid: int) -> None:
        """The DPE is dead: its lease, if it still held it, is free at once."""
        lease = await self._lease(name)
        if lease and lease["holder"] and lease["pid"] == pid:
            await self._db(self.store.release_lease, name, lease["holder"], lease["epoch"])

    # =========================================================================
    # helpers

    async def _lease(self, name: str) -> dict[str, Any] | None:
        lease: dict[str, Any] | None = await self._db(self.store.get_lease, name)
        return lease

    def _holds(self, lease: dict[str, Any] | None, process: DpeProcess) -> bool:
        return bool(
            lease
            and lease["holder"]
            and lease["pid"] == process.pid
            and lease["expires_at"] > self.clock.time()
        )

    def _holds_stale(self, lease: dict[str, Any] | None, process: DpeProcess) -> bool:
        """Still its holder, but not renewed for a tick past its expiry (hung).

        A released lease is not stale: a DPE gives it up just before exiting."""
        if not lease or not lease["holder"] or lease["pid"] != process.pid:
            return False
        return bool(lease["expires_at"] + self.options.check_interval < self.clock.time())

    def _lease_lost(self, lease: dict[str, Any] | None, process: DpeProcess) -> bool:
        """Not held by the process any more, or not renewed (a tick's slack)."""
        if not lease or not lease["holder"] or lease["pid"] != process.pid:
            return True
        return bool(lease["expires_at"] + self.options.check_interval < self.clock.time())

    def _lost_reason(self, slot: Slot, lease: dict[str, Any] | None) -> str:
        assert slot.process is not None
        pid = slot.process.pid
        if lease and lease["holder"] and lease["pid"] == pid:
            late = self.clock.time() - float(lease["renewed_at"])
            return f"dpe (pid {pid}) has not renewed its lease for {late:.1f} s"
        holder = lease["holder"] if lease and lease["holder"] else "nobody"
        return f"dpe (pid {pid}) lost its lease (now held by {holder})"

    def _on_this_host(self, holder: str) -> bool:
        """Held by a DPE of this member (holders are ``MEMBER:PID``)."""
        return holder.rsplit(":", 1)[0] == self.host

    def _stopped_answer(self, slot: Slot, left: list[str]) -> dict[str, Any]:
        return {**slot.last, "left": left} if slot.last else {"pid": None, "left": left}

    def _settle(
        self, waiters: list[asyncio.Future[dict[str, Any]]], answer: dict[str, Any]
    ) -> None:
        for future in waiters:
            if not future.done():
                future.set_result(dict(answer))
        waiters.clear()

    async def _event(self, slot: Slot, state: str, reason: str) -> None:
        log.info("deployable=%s: %s: %s", slot.name, state, reason)
        event = Event(self.clock.time(), slot.name, state, reason)
        try:
            await self._db(self.store.append_event, event)
        except PcloudError as error:
            log.error("deployable=%s: cannot record an event: %s", slot.name, error)

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        result: T = await self._in_store(fn, *args)
        return result


def describe_exit(status: int | None) -> str:
    """``status 0``, ``status -9 (SIGKILL)``; None (not our child): unknown."""
    if status is None:
        return "an unknown status (not a child of this cped)"
    if status < 0:
        with contextlib.suppress(ValueError):
            return f"status {status} ({signal.Signals(-status).name})"
    return f"status {status}"


def _desired_states(store: Store) -> dict[str, str]:
    return {doc["name"]: desired for doc, desired in store.list_deployables()}


def _instances_left(store: Store, name: str) -> list[str]:
    """Assemblies whose instance a DPE recorded and did not destroy."""
    return sorted(store.get_runtime(name).get(INSTANCE, {}))


def _recorded_state(store: Store, name: str) -> str | None:
    state = store.get_runtime(name).get("deployable", {}).get("", {}).get("state")
    return str(state) if state is not None else None


async def _direct(fn: Callable[..., T], *args: Any) -> T:
    return fn(*args)
