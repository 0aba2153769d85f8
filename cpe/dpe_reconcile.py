"""Each state of a DPE's slot, and the actions that drive it where it should be.

``Reconciler.reconcile`` takes one step of a slot towards its deployable's
desired state; ``exited`` handles a DPE's exit.  The supervisor calls both from
its loop (``cpe.supervisor``), which is where the slots and requests are.

Spawning a DPE takes a turn (``cpe.dpe_admission``); without one free, the slot
is ``QUEUED``.  Leases are read once per tick for every deployable
(``leases``, kept up to date with this cped's own releases); a DPE's lease is
judged only while ``judging`` (not in a tick of a cped that was itself not
scheduled on time: its DPEs probably were not either).

A deployable another member runs is desired ``elsewhere``: nothing is
started for it (a start queued here is called off: turns are this member's
own), and a DPE of this member that still runs it hands over (SIGUSR1: it
releases its lease and exits, leaving everything running).
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from cpe.dpe_admission import Turns
from cpe.dpe_scheduling import NEWBORN, Doubt
from cpe.dpe_slot import (
    ELSEWHERE,
    REFUSED_CONFIGURATION,
    STARTED,
    DpeProcess,
    DpeState,
    Launcher,
    Slot,
    SupervisorOptions,
    settle,
)
from foundation.clock import Clock
from foundation.errors import PcloudError
from foundation.events import Event
from foundation.runtime_kinds import DEPLOYABLE, INSTANCE
from foundation.store import Store

log = logging.getLogger("cped.supervisor")

T = TypeVar("T")
StoreCall = Callable[..., Awaitable[Any]]  # runs a store method off the loop
RecordExit = Callable[[str, int, int | None], None]  # deployable, generation, status
Lease = dict[str, Any]
LEASE_SLACK = 0.05  # a look this long after another's lease expires finds it expired


def _nothing() -> None:
    return None


@dataclass(eq=False)
class Reconciler:
    store: Store
    launcher: Launcher
    in_store: StoreCall
    current_options: Callable[[], SupervisorOptions]  # read each time: cped's config may change
    clock: Clock
    host: str
    record_exit: RecordExit  # only records; the supervisor's tick acts
    turns: Turns = field(default_factory=Turns)
    on_event: Callable[[], None] = _nothing  # an event was stored (the event feed looks)
    leases: dict[str, Lease] | None = None  # this tick's leases (None: read each one)
    judging: bool = True  # False: no DPE is killed for its lease or grace in this tick
    # a lease holder whose member is gone: its DPE is spawned at once and waits
    # for the expiry itself, so that it is ready the moment the lease is free
    holder_gone: Callable[[str], bool] = lambda _holder: False

    @property
    def options(self) -> SupervisorOptions:
        return self.current_options()

    async def read_leases(self) -> None:
        """Every deployable's lease, once for this tick."""
        self.leases = await self.db(self.store.list_leases)

    async def reconcile(self, slot: Slot, desired: str | None) -> None:
        """One step of ``slot`` towards ``desired`` (``started``, ``stopped`` or None: deleted)."""
        if slot.state in (DpeState.STOPPED, DpeState.QUEUED):
            await self._when_stopped(slot, desired)
        elif slot.state is DpeState.BACKOFF:
            await self._when_backing_off(slot, desired)
        elif slot.state is DpeState.STARTING:
            await self._when_starting(slot, desired)
        elif slot.state is DpeState.RUNNING:
            await self._when_running(slot, desired, await self._lease(slot.name))
        else:
            await self._when_stopping(slot)

    async def _when_stopped(self, slot: Slot, desired: str | None) -> None:
        if desired != STARTED:
            slot.state = DpeState.STOPPED  # a start still queued is called off
        elif slot.gave_up:
            return  # failed for its configuration: until a start request
        if desired == ELSEWHERE:
            slot.check_left = False  # the member that runs it cleans up
            note = {"pid": None, "elsewhere": True, "note": "another member runs it"}
            settle(slot.starts, note)
            settle(slot.stops, note | {"left": []})
        elif desired == STARTED:
            await self._launch(slot)
        elif slot.check_left:
            await self._clean_up(slot)
        else:
            settle(slot.stops, slot.stopped_answer([]))

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
            slot.refusals = 0  # it took its configuration
            pid = slot.process.pid
            await self._event(
                slot, "dpe-running", f"dpe (pid {pid}) holds the lease (epoch {slot.epoch})"
            )
            if slot.spawned_clearing:
                slot.clear_failed = slot.spawned_clearing = False
                settle(slot.starts, {"pid": pid, "note": "the DPE is running"})
            await self._when_running(slot, desired, lease)
            return
        options = self.options
        grace = options.start_grace
        late = self.clock.monotonic() - slot.since > grace
        if self.judging and not slot.killed and late:
            if slot.doubt is None:  # accounted from its start: it has waited for nothing before
                slot.doubt = Doubt(slot.since, slot.since, NEWBORN)
            reason = f"dpe (pid {slot.process.pid}) did not take its lease within {grace:g} s"
            await self._judge(slot, reason, grace, grace + options.doubt_limit)

    async def _when_running(
        self, slot: Slot, desired: str | None, lease: dict[str, Any] | None
    ) -> None:
        assert slot.process is not None
        if slot.killed:
            return  # its exit is on the way
        self._note_due(slot, lease)
        if self._lease_lost(lease, slot.process):
            if self.judging:
                await self._lease_overdue(slot, lease)
            if slot.killed or desired == STARTED:
                return  # late with its lease: a stop is still asked for (SIGKILL at its time)
        else:
            self._clear_doubt(slot)
        if desired == ELSEWHERE:
            await self._hand_over(slot)
        elif desired != STARTED:
            await self._terminate(slot)
        elif slot.clear_failed:
            await self._clear_failed(slot)
        if slot.reload_pending and slot.state is DpeState.RUNNING and not slot.killed:
            slot.reload_pending = False
            slot.process.signal(signal.SIGHUP)
        if slot.requests_pending and slot.state is DpeState.RUNNING and not slot.killed:
            slot.requests_pending = False
            slot.process.signal(signal.SIGUSR2)

    async def _when_stopping(self, slot: Slot) -> None:
        if slot.killed or slot.process is None or not self.judging:
            return
        if self.clock.monotonic() >= slot.kill_at:
            waited = slot.kill_at - slot.since_stop
            pid = slot.process.pid
            await self._kill(slot, f"dpe (pid {pid}) did not stop within {waited:g} s")
            return
        lease = await self._lease(slot.name)
        self._note_due(slot, lease)
        if self._holds_stale(lease, slot.process):  # hung: it is not stopping anything
            await self._lease_overdue(slot, lease)
        else:
            self._clear_doubt(slot)

    async def _lease_overdue(self, slot: Slot, lease: Lease | None) -> None:
        """Not renewed: killed once it could have renewed; taken over: killed now."""
        assert slot.process is not None
        reason = self._lost_reason(slot, lease)
        if not lease or lease["pid"] != slot.process.pid:
            await self._kill(slot, reason)  # another holds it, or nobody: it must not act
            return
        if slot.doubt is None:
            slot.doubt = Doubt.begin(self.clock.monotonic(), slot.process.scheduling())
            log.warning("deployable=%s: %s: looking whether it could run", slot.name, reason)
            return
        options = self.options
        await self._judge(slot, reason, options.confirm_after, options.doubt_limit)

    async def _judge(self, slot: Slot, reason: str, could_run: float, limit: float) -> None:
        """Kill a late DPE once it could run ``could_run`` seconds, or after ``limit``."""
        assert slot.process is not None and slot.doubt is not None
        now, doubt = self.clock.monotonic(), slot.doubt
        doubt.look(now, slot.process.scheduling())
        if doubt.could_run >= could_run or doubt.lasted(now) >= limit:
            await self._kill(slot, f"{reason}; {doubt.evidence(now)}")

    def _clear_doubt(self, slot: Slot) -> None:
        """Its DPE is on time again: say how late it was, if it was."""
        doubt, slot.doubt = slot.doubt, None
        if doubt is not None and slot.process is not None:
            now = self.clock.monotonic()
            doubt.look(now, slot.process.scheduling())
            log.warning(
                "deployable=%s: dpe (pid %d) renewed its lease again, not killed: %s",
                slot.name,
                slot.process.pid,
                doubt.evidence(now),
            )

    def _note_due(self, slot: Slot, lease: Lease | None) -> None:
        """When to look at this DPE's lease again: just past its expiry."""
        expires = float(lease["expires_at"]) if lease and lease["holder"] else 0.0
        slot.lease_due = expires + self.options.check_interval if expires else 0.0

    # -- actions ---------------------------------------------------------------------

    async def _launch(self, slot: Slot, why: str = "") -> None:
        """A DPE for the slot: adopt the lease holder if one lives, else spawn."""
        if await self._adopt(slot):
            return
        lease = await self._lease(slot.name)
        held = lease and lease["holder"] and lease["expires_at"] > self.clock.time()
        if held and lease and not self.holder_gone(lease["holder"]):
            note = f"its lease is held by {lease['holder']}: waiting for it to expire"
            if slot.waiting_note != note:
                slot.waiting_note = note
                log.warning("deployable=%s: %s", slot.name, note)
            slot.held_until = float(lease["expires_at"]) + LEASE_SLACK  # its release wakes sooner
            settle(slot.starts, {"pid": None, "note": note})
            return
        slot.waiting_note, slot.held_until = "", 0.0
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
        on_exit = partial(self.record_exit, slot.name, generation)
        try:
            process = self.launcher.attach(slot.name, int(lease["pid"]), on_exit)
        except OSError as error:  # a live DPE that cannot be watched: never start another
            note = f"cannot watch dpe {lease['holder']} ({error}): waiting for its lease to expire"
            if slot.waiting_note != note:
                slot.waiting_note = note
                log.error("deployable=%s: %s", slot.name, note)
            return True
        if process is None:  # its holder is dead: free the lease for the next one
            await self.db(self.store.release_lease, slot.name, lease["holder"], lease["epoch"])
            await self._reread_lease(slot.name)
            log.info("deployable=%s: released the lease of %s (gone)", slot.name, lease["holder"])
            return False
        self._watch(slot, process, generation, DpeState.RUNNING)
        slot.epoch = int(lease["epoch"])
        reason = f"adopted the running dpe (pid {process.pid}, lease epoch {slot.epoch})"
        await self._event(slot, "dpe-adopted", reason)
        if not slot.clear_failed:  # else answered once it is known not to have failed
            settle(slot.starts, {"pid": process.pid, "note": "already running"})
        return True

    async def _spawn(self, slot: Slot, why: str = "", *, stop_only: bool = False) -> None:
        if slot.name not in self.turns and not self.turns.has_room(self.options.starts_at_once):
            self._queue(slot)
            return
        generation = slot.generation + 1
        clearing = slot.clear_failed
        try:
            process = self.launcher.spawn(
                slot.name,
                clear_failed=clearing,
                on_exit=partial(self.record_exit, slot.name, generation),
                stop_only=stop_only,  # never creates what a run would: it only stops
            )
        except OSError as error:
            delay = self._count_failed_run(slot)
            self._retry_in(slot, delay)
            reason = f"cannot start dped: {error}; trying again in {delay:.1f} s"
            await self._event(slot, "dpe-restarting", f"{reason} (attempt {slot.attempts})")
            settle(slot.starts, {"pid": None, "note": reason})
            return
        self._watch(slot, process, generation, DpeState.STARTING)
        slot.spawned_clearing = clearing
        slot.waiting_note = ""
        text = f"dpe started (pid {process.pid})"
        if clearing:
            text += " on a start request"
        started = await self._event(slot, "dpe-started", f"{text}{': ' + why if why else ''}")
        self.turns.take(slot.name, self.clock.monotonic(), started)
        settle(slot.starts, {"pid": process.pid, "note": "a DPE was started"})

    def _queue(self, slot: Slot) -> None:
        """No turn free: the slot waits for one (its requests are answered now)."""
        slot.state = DpeState.QUEUED
        limit = self.options.starts_at_once
        note = f"waiting for its turn: {limit} deployables are starting (at most {limit} at once)"
        if slot.waiting_note != note:
            slot.waiting_note = note
            log.info("deployable=%s: %s", slot.name, note)
        settle(slot.starts, {"pid": None, "note": note})

    def _watch(self, slot: Slot, process: DpeProcess, generation: int, state: DpeState) -> None:
        slot.process, slot.generation, slot.state = process, generation, state
        slot.since = self.clock.monotonic()
        age = None if process.child else process.running_for()  # adopted: its own
        slot.started = slot.since - (age or 0.0)
        slot.epoch, slot.doubt = None, None
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
        recorded = await self.db(_recorded_state, self.store, slot.name)
        if recorded != "failed":
            slot.clear_failed = False
            settle(slot.starts, {"pid": slot.process.pid, "note": "already running"})
            return
        slot.replace = True
        reason = f"the deployable had failed: replacing dpe (pid {slot.process.pid})"
        await self._kill(slot, reason + " to clear it")

    async def _clean_up(self, slot: Slot) -> None:
        """Desired stopped and no DPE: stop whatever a dead DPE left running."""
        if await self._adopt(slot):
            return  # a live DPE: the next tick tells it to stop
        left = await self.db(_instances_left, self.store, slot.name)
        if not left:
            slot.check_left, slot.attempts = False, 0
            await self._record_stopped(slot)
            settle(slot.stops, slot.stopped_answer([]))
            return
        if slot.attempts >= self.options.stop_attempts:
            slot.check_left = False
            reason = (
                f"instances of {', '.join(left)} are left: {slot.attempts} DPEs could not stop them"
            )
            await self._event(slot, "dpe-left", reason)
            settle(slot.stops, slot.stopped_answer(left))
            return
        await self._spawn(slot, f"to stop what is left ({', '.join(left)})", stop_only=True)

    async def exited(self, slot: Slot, status: int | None, desired: str | None) -> None:
        """The slot's DPE exited with ``status``: restart it after a back-off, or not."""
        assert slot.process is not None
        pid, ran = slot.process.pid, self.clock.monotonic() - slot.since
        self.turns.give_back(slot.name)
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
        if self._refused_too_often(slot, status):
            await self._give_up(slot, pid)
            return
        if slot.replace or slot.state is DpeState.STOPPING:
            delay = 0.0  # replaced on purpose, or started again while it stopped
        else:
            delay = self._count_failed_run(slot, after_healthy=ran >= self.options.healthy_after)
        self._retry_in(slot, delay)
        reason = f"dpe (pid {pid}) exited with {slot.last['exit']}; restarting in {delay:.1f} s"
        await self._event(slot, "dpe-restarting", f"{reason} (attempt {slot.attempts})")

    async def _record_stopped(self, slot: Slot) -> None:
        """No DPE and nothing left: the deployable is stopped, whatever its last DPE
        recorded (one that failed to start left "starting", and no DPE ran the stop to
        say otherwise).  A failed deployable stays failed; a lease still held means a
        DPE (of another member) has yet to record its own stop."""
        recorded = await self.db(_recorded_state, self.store, slot.name)
        lease = await self._lease(slot.name)
        if recorded in (None, "stopped", "failed") or (lease and lease["holder"]):
            return
        reason = f"stopped with no DPE running (the last one recorded {recorded})"
        stopped = {"state": "stopped", "reason": reason, "failures": []}
        await self.db(self.store.put_runtime, slot.name, DEPLOYABLE, "", stopped)
        await self._event(slot, "stopped", reason)

    def _refused_too_often(self, slot: Slot, status: int | None) -> bool:
        """One more DPE in a row refused its configuration: was it one too many?"""
        refused = status == REFUSED_CONFIGURATION and not slot.killed
        slot.refusals = slot.refusals + 1 if refused else 0
        return slot.refusals >= self.options.refusal_attempts

    async def _give_up(self, slot: Slot, pid: int) -> None:
        """Mark the deployable failed with the DPE's reason; no DPE until started again."""
        slot.state, slot.gave_up = DpeState.STOPPED, True
        reason = (
            f"dpe (pid {pid}) exited with {slot.last['exit']}: {slot.refusals} DPEs in a row"
            " refused the configuration; fix it, then start the deployable again"
        )
        failed = {"state": "failed", "reason": reason, "failures": []}
        await self.db(self.store.put_runtime, slot.name, DEPLOYABLE, "", failed)
        await self._event(slot, "failed", reason)
        settle(slot.starts, {"pid": None, "note": reason})

    async def _exited_unwanted(self, slot: Slot, pid: int, failed: bool) -> None:
        slot.check_left = True
        await self._event(slot, "dpe-exited", f"dpe (pid {pid}) exited with {slot.last['exit']}")
        if not failed:
            slot.state = DpeState.STOPPED
            return
        self._retry_in(slot, self._count_failed_run(slot))

    def _count_failed_run(self, slot: Slot, *, after_healthy: bool = False) -> float:
        """One more failed run in a row (the first, after a healthy one); the delay it earns."""
        slot.attempts = 1 if after_healthy else slot.attempts + 1
        return self.options.backoff.delay(slot.attempts)

    def _retry_in(self, slot: Slot, delay: float) -> None:
        slot.state, slot.retry_at = DpeState.BACKOFF, self.clock.monotonic() + delay

    async def _release_lease(self, name: str, pid: int) -> None:
        """The DPE is dead: its lease, if it still held it, is free at once."""
        lease = await self._lease(name)
        if lease and lease["holder"] and lease["pid"] == pid:
            await self.db(self.store.release_lease, name, lease["holder"], lease["epoch"])
            await self._reread_lease(name)

    # -- the store: leases and events ------------------------------------------------

    async def _lease(self, name: str) -> Lease | None:
        if self.leases is not None:
            return self.leases.get(name)
        lease: Lease | None = await self.db(self.store.get_lease, name)
        return lease

    async def _reread_lease(self, name: str) -> None:
        """After this cped changed it: this tick sees the lease as it is now."""
        if self.leases is None:
            return
        lease = await self.db(self.store.get_lease, name)
        if lease is None:
            self.leases.pop(name, None)
        else:
            self.leases[name] = lease

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

    async def _event(self, slot: Slot, state: str, reason: str) -> int:
        """Record it; its id (0 if the store refused it)."""
        log.info("deployable=%s: %s: %s", slot.name, state, reason)
        event = Event(self.clock.time(), slot.name, state, reason)
        try:
            stored = await self.db(self.store.append_event, event)
        except PcloudError as error:
            log.error("deployable=%s: cannot record an event: %s", slot.name, error)
            return 0
        self.on_event()
        return stored.id or 0

    async def db(self, fn: Callable[..., T], *args: Any) -> T:
        result: T = await self.in_store(fn, *args)
        return result


def describe_exit(status: int | None) -> str:
    """``status 0``, ``status -9 (SIGKILL)``; None (not our child): unknown."""
    if status is None:
        return "an unknown status (not a child of this cped)"
    if status < 0:
        with contextlib.suppress(ValueError):
            return f"status {status} ({signal.Signals(-status).name})"
    return f"status {status}"


def _instances_left(store: Store, name: str) -> list[str]:
    """Assemblies whose instance a DPE recorded and did not destroy."""
    return sorted(store.get_runtime(name).get(INSTANCE, {}))


def _recorded_state(store: Store, name: str) -> str | None:
    state = store.get_runtime(name).get("deployable", {}).get("", {}).get("state")
    return str(state) if state is not None else None
