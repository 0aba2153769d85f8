"""Assignment: the assembly each service gets, worked out as Pacemaker's scheduler does.

This is Pacemaker 2.1.5's assignment of primitives (``pcmk__primitive_assign``
in ``lib/pacemaker/pcmk_sched_primitive.c``, colocation in
``pcmk_sched_colocation.c``, node order in ``pcmk_sched_nodes.c``) for what a
deployable can say, with ``placement-strategy=default``.  Each service has a
score on each of its candidate assemblies, built from

- its location score there;
- its stickiness where it runs (only if it runs on exactly one assembly);
- -INFINITY where its fail count reached ``migration_threshold``, where an
  agent answered with a hard error (OCF 2-5) or its stop failed, and everywhere once
  the agent said it is not configured (OCF 6); +INFINITY where an
  administrator moved it.

Services are assigned in document order, after the pinned resources (which
Pacemaker assigns first, and which count as resources placed on their
assembly).  Assigning a service first assigns the services it is colocated
with, and applies each such colocation to its scores (INFINITY: -INFINITY
everywhere else; -INFINITY: -INFINITY there; a finite score: added there).  Then
the services colocated with it lend it their own scores, scaled by the
colocation score / INFINITY, and so on down their own followers; a follower
whose scores would leave no assembly for it is left out, alone.  Colocation
cycles are allowed: a service met again while it is being assigned is not
waited for, and a service met again while its followers' scores are merged is
not merged twice.

The service then goes to the best running assembly with a score of 0 or more.
Among equal scores Pacemaker prefers, in turn, the assembly with fewer
resources placed so far, the one it already runs on, and the lower name;
above 0 it also keeps it where it runs whenever that assembly ties for best.

Four rules are ours: a service whose stop failed stays where it is (it may
still run there; Pacemaker, with fencing off, blocks it there too) until that
assembly is fenced; nothing that must not run with it (-INFINITY, either way)
starts there meanwhile (Pacemaker keeps only the dependent away); a service that may still run on an assembly whose state is
not known yet (being connected to, or fenced) starts nowhere new; and a service
assigned, in a colocation cycle, before a service it must run with that then
runs nowhere does not run either (``colocation-cycle`` in ``dpe.pacemaker``).

Scores are kept with the terms they are made of, so that each decision can be
explained (``dpe.placement``).  One module of this size on purpose: it follows
Pacemaker's assignment functions one for one, and reads best beside them.
"""

from __future__ import annotations

import math
import struct
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from dpe.planner import Observed, ResourceStatus, resolve
from dpe.states import AssemblyState, ResourceState
from foundation.model import INFINITY, Colocation, Deployable, ResourceId, Service, score_text

HARD_ERRORS = range(2, 7)  # OCF rc codes Pacemaker treats as hard errors
NOT_CONFIGURED = 6  # the fatal one: banned everywhere
_ACTIVE = (
    ResourceState.RUNNING,
    ResourceState.STARTING,
    ResourceState.STOPPING,
    ResourceState.FAILED,
)
# states in which an assembly's instance may exist but what runs there is not known
_UNCERTAIN = (
    AssemblyState.UNKNOWN,
    AssemblyState.CREATING,
    AssemblyState.CONNECTING,
    AssemblyState.FENCING,
    AssemblyState.STOPPING,
)


def add_scores(a: int, b: int) -> int:
    """Pacemaker's score addition: -INFINITY wins over INFINITY; clamped."""
    if a <= -INFINITY or b <= -INFINITY:
        return -INFINITY
    if a >= INFINITY or b >= INFINITY:
        return INFINITY
    return max(-INFINITY, min(INFINITY, a + b))


@dataclass(frozen=True)
class Term:
    """One part of a score, and why it is there."""

    amount: int
    why: str

    def __str__(self) -> str:
        amount = score_text(self.amount)
        sign = "" if isinstance(amount, str) or self.amount < 0 else "+"
        return f"{sign}{amount} {self.why}"


@dataclass(frozen=True)
class Score:
    """A service's score on one assembly, with its terms."""

    value: int
    terms: tuple[Term, ...] = ()

    def plus(self, amount: int, why: str) -> Score:
        return Score(add_scores(self.value, amount), (*self.terms, Term(amount, why)))

    def ban(self) -> Term | None:
        """The first term that keeps it off (-INFINITY), if any."""
        return next((t for t in self.terms if t.amount <= -INFINITY), None)


Table = dict[str, Score]  # assembly -> score


@dataclass(frozen=True)
class Assignment:
    """Where one service was assigned, its final scores, and how it was decided."""

    service: str
    target: str | None
    scores: Mapping[str, Score]  # every candidate
    tie: str = ""  # how equal scores were told apart
    notes: tuple[str, ...] = ()  # preferences left out
    held: str = ""  # one of our own rules kept it where it was


# ---------------------------------------------------------------------------
# what runs where


def copies_of(service: Service, observed: Observed) -> list[str]:
    """Where copies of the service may be: its candidates, and the assemblies it was
    on before they stopped being candidates (an orphan copy still to stop)."""
    former = [r.assembly for r in observed.orphans if r.resource == service.name]
    return [*service.assemblies, *sorted(set(former) - set(service.assemblies))]


def possibly_active(status: ResourceStatus) -> bool:
    """It may run: an active state (or its stop failed), or not probed yet but
    running when last known."""
    if may_run(status):
        return True
    return status.state is ResourceState.UNKNOWN and status.applied is not None


def may_run(status: ResourceStatus) -> bool:
    """Active, or its stop failed."""
    return status.state in _ACTIVE or stop_failed(status)


def current_location(service: Service, observed: Observed) -> str | None:
    """Where it runs: on a running assembly if it can be (best score), else any."""
    active = [
        a
        for a in service.assemblies
        if may_run(observed.resource(ResourceId(a, service.name)))
        and observed.assembly(a).state is not AssemblyState.STOPPED
    ]
    up = [a for a in active if observed.assembly(a).state is AssemblyState.RUNNING]
    location_score = {loc.assembly: loc.score for loc in service.locations}
    return max(up or active, key=location_score.__getitem__, default=None)


def stop_failed(status: ResourceStatus) -> bool:
    """Its stop failed: it may still run, and only a fence makes sure it does not."""
    return status.last_op == "stop" and status.state in (
        ResourceState.FAILED,
        ResourceState.UNRECOVERABLE,
    )


def active_for_pacemaker(status: ResourceStatus) -> bool:
    """Active as its op history tells Pacemaker: started, or failed but not stopped."""
    if status.state in (ResourceState.RUNNING, ResourceState.FAILED):
        return True
    return status.state is ResourceState.UNRECOVERABLE  # a hard error: maybe half started


# ---------------------------------------------------------------------------
# fail counts


def whole_seconds(failure_timeout: float) -> int:
    """A failure timeout as Pacemaker keeps it: whole seconds, at least one (0: none)."""
    return max(1, round(failure_timeout)) if failure_timeout > 0 else 0


def fail_count(times: Iterable[float], service: Service, now: float) -> tuple[int, float | None]:
    """Pacemaker's fail count at ``now``, and when it expires (None: never).

    A fail count expires as a whole, ``failure_timeout`` seconds after the last
    failure (Pacemaker compares whole seconds: at that second it still counts).
    """
    counted = current_failures(times, service)
    timeout = whole_seconds(service.failure_timeout)
    if not counted or not timeout:
        return len(counted), None
    if _expired(counted[-1], now, timeout):
        return 0, None
    return len(counted), float(math.floor(counted[-1]) + timeout + 1)


def current_failures(times: Iterable[float], service: Service) -> list[float]:
    """The failures of the current fail count: a failure after the count expired
    (``failure_timeout`` after the one before) starts a new count."""
    timeout = whole_seconds(service.failure_timeout)
    counted: list[float] = []
    for t in sorted(times):
        if counted and timeout and _expired(counted[-1], t, timeout):
            counted = []
        counted.append(t)
    return counted


def _expired(last: float, now: float, timeout: int) -> bool:
    return math.floor(now) > math.floor(last) + timeout


# ---------------------------------------------------------------------------
# resources placed before the services


def pinned_load(document: Deployable, observed: Observed) -> Counter[str]:
    """How many pinned resources Pacemaker places on each assembly before any service
    (where they run or will start; not where they are banned or held stopped)."""
    load: Counter[str] = Counter()
    for rid in document.resource_ids():
        definition = document.resource(rid)
        assert definition is not None
        if observed.assembly(rid.assembly).state is AssemblyState.RUNNING and _placed(
            observed, observed.resource(rid), resolve(definition, observed.assemblies) is None
        ):
            load[rid.assembly] += 1
    return load


def _placed(observed: Observed, status: ResourceStatus, unresolved: bool) -> bool:
    if stop_failed(status):
        return True  # blocked where it is
    if status.state is ResourceState.UNRECOVERABLE or _banned_by_hard_error(status):
        return False
    if status.state is ResourceState.RUNNING:
        return True
    backing_off = status.retry_at is not None and status.retry_at > observed.now
    return not (backing_off or unresolved)


def _banned_by_hard_error(status: ResourceStatus) -> bool:
    return status.last_rc in HARD_ERRORS and status.last_op in ("probe", "monitor")


# ---------------------------------------------------------------------------
# single-precision arithmetic, as Pacemaker's colocation factors are C floats


def _f32(value: float) -> float:
    result: float = struct.unpack("f", struct.pack("f", value))[0]
    return result


def colocation_factor(score: int, negative: bool = False) -> float:
    """``score / INFINITY`` as a C float (negated below a negative factor)."""
    return _f32(_f32((-1.0 if negative else 1.0) * score) / _f32(INFINITY))


def attenuated(score: int, factor: float) -> int:
    """``score * factor`` rounded half away from zero, never rounded to nothing."""
    value = _f32(factor * _f32(score))
    weight = int(value - 0.5) if value < 0 else int(value + 0.5)
    if weight == 0 and score != 0 and factor != 0:
        return 1 if factor > 0 else -1
    return weight


# ---------------------------------------------------------------------------
# the assignment


def assign(document: Deployable, observed: Observed) -> dict[str, Assignment]:
    """Every service's assignment, in document order."""
    assigner = _Assigner(document, observed)
    for service in document.services:
        assigner.assign(service.name)
    assigner.keep_with_leaders()
    return {s.name: assigner.result(s.name) for s in document.services}


class _Assigner:
    """One pass over the services, with Pacemaker's state for each."""

    def __init__(self, document: Deployable, observed: Observed) -> None:
        self.doc = document
        self.obs = observed
        self.services = {s.name: s for s in document.services}
        self.load = pinned_load(document, observed)
        self.tables = {s.name: self._initial(s) for s in document.services}
        self.leaders = _sorted_colocations(document.colocations, lambda c: c.service)
        self.followers = _sorted_colocations(document.colocations, lambda c: c.with_)
        self.assigned: dict[str, str | None] = {}
        self.assigning: set[str] = set()
        self.merging: set[str] = set()
        self.notes: dict[str, list[str]] = {name: [] for name in self.services}
        self.ties: dict[str, str] = {}
        self.held: dict[str, str] = {}

    def result(self, name: str) -> Assignment:
        return Assignment(
            name,
            self.assigned.get(name),
            dict(self.tables[name]),
            self.ties.get(name, ""),
            tuple(self.notes[name]),
            self.held.get(name, ""),
        )

    # -- facts ------------------------------------------------------------------

    def _up(self, assembly: str) -> bool:
        return self.obs.assembly(assembly).state is AssemblyState.RUNNING

    def _held_apart(self, name: str, assembly: str) -> list[str]:
        """The services that must not run with ``name`` (-INFINITY, either way) whose
        stop failed on ``assembly``: blocked there until it is fenced (ours,
        ``failed-stop`` in ``dpe.pacemaker``: Pacemaker only keeps the dependent away)."""
        apart = {
            c.with_ if c.service == name else c.service
            for c in self.doc.colocations
            if c.score <= -INFINITY and name in (c.service, c.with_)
        }
        return sorted(
            other
            for other in apart - {name}
            if self._up(assembly) and stop_failed(self._status(assembly, other))
        )

    def _status(self, assembly: str, name: str) -> ResourceStatus:
        return self.obs.resource(ResourceId(assembly, name))

    def _available(self, table: Mapping[str, Score]) -> bool:
        """Some assembly of the table may take it (Pacemaker's any node available)."""
        return any(self._up(a) and s.value >= 0 for a, s in table.items())

    def running_on(self, service: Service) -> list[str]:
        """Where Pacemaker sees it active: running assemblies whose history says so."""
        return [
            a
            for a in copies_of(service, self.obs)
            if self._up(a) and active_for_pacemaker(self._status(a, service.name))
        ]

    # -- the scores before any colocation ------------------------------------------

    def _initial(self, service: Service) -> Table:
        table = {
            loc.assembly: Score(loc.score, (Term(loc.score, "location score"),))
            for loc in service.locations
        }
        running = self.running_on(service)
        if service.stickiness >= 1 and len(running) == 1 and running[0] in table:
            table[running[0]] = table[running[0]].plus(
                service.stickiness, "stickiness (it runs here)"
            )
        for assembly in table:
            for amount, why in self._bans(service, assembly):
                table[assembly] = table[assembly].plus(amount, why)
        return table

    def _bans(self, service: Service, assembly: str) -> list[tuple[int, str]]:
        terms = []
        failures = self.obs.service_failures.get(ResourceId(assembly, service.name), ())
        failed, _ = fail_count(failures, service, self.obs.now)
        threshold = service.migration_threshold
        if self._up(assembly) and threshold and failed >= threshold:
            plural = "s" if failed > 1 else ""
            why = f"{failed} failure{plural} on {assembly} (migration threshold {threshold})"
            terms.append((-INFINITY, why))
        status = self._status(assembly, service.name)
        if self._up(assembly) and stop_failed(status):
            terms.append((-INFINITY, f"its stop failed on {assembly}"))
        elif self._up(assembly) and (
            status.state is ResourceState.UNRECOVERABLE or _banned_by_hard_error(status)
        ):
            rc = f" (OCF {status.last_rc})" if status.last_rc else ""
            terms.append((-INFINITY, f"a hard error on {assembly}{rc}"))
        for other in self._held_apart(service.name, assembly):
            why = f"{other} must not run with it and may still run on {assembly} (its stop failed)"
            terms.append((-INFINITY, why))
        misconfigured = self._misconfigured(service)
        if misconfigured is not None:  # its parameters are wrong: no assembly will do
            terms.append((-INFINITY, f"not configured on {misconfigured} (OCF 6)"))
        if self.obs.move_requests.get(service.name) == assembly:
            terms.append((INFINITY, "moved here by the administrator"))
        return terms

    def _misconfigured(self, service: Service) -> str | None:
        """An assembly where the agent said its configuration is wrong (a fatal error:
        Pacemaker bans it from every assembly)."""
        for assembly in copies_of(service, self.obs):
            status = self._status(assembly, service.name)
            if self._up(assembly) and status.last_rc == NOT_CONFIGURED:
                return assembly
        return None

    # -- assigning ------------------------------------------------------------------

    def assign(self, name: str) -> str | None:
        if name in self.assigned:
            return self.assigned[name]
        if name in self.assigning:
            return None  # a colocation cycle: not waited for (Pacemaker's loop breaker)
        self.assigning.add(name)
        for colocation in self.leaders.get(name, ()):
            self._with_leader(name, colocation)
        for colocation in self.followers.get(name, ()):
            self._lend_scores(name, colocation)
        target = self._best(name)
        hold = self._hold(name)
        if hold is not None and hold[0] != target:
            target, self.held[name] = hold
            self.ties.pop(name, None)
        if target is not None:
            self.load[target] += 1
        self.assigned[name] = target
        self.assigning.discard(name)
        return target

    def _with_leader(self, name: str, colocation: Colocation) -> None:
        """Assign the leader, then apply the colocation to this service's scores."""
        finite_negative = -INFINITY < colocation.score < 0
        archive = dict(self.tables[name]) if finite_negative else None
        self.assign(colocation.with_)
        if colocation.with_ not in self.assigned:
            return  # met again in a cycle: it has no assembly yet
        self._apply_colocation(name, colocation)
        if archive is not None and not self._available(self.tables[name]):
            if self._available(archive):
                self._left_out(name, f"its colocation with {colocation.with_}")
            self.tables[name] = archive

    def _apply_colocation(self, name: str, colocation: Colocation) -> None:
        where = self.assigned[colocation.with_]
        score, leader = colocation.score, colocation.with_
        if where is None and score < 0:
            return  # kept apart from a service that runs nowhere: nothing to avoid
        work = dict(self.tables[name])
        for assembly, current in work.items():
            term = _colocation_term(leader, score, where, assembly)
            if term is not None:
                work[assembly] = current.plus(*term)
        if abs(score) >= INFINITY or self._available(work):
            self.tables[name] = work
        elif self._available(self.tables[name]):
            self._left_out(name, f"its colocation with {leader}")

    def _left_out(self, name: str, what: str) -> None:
        self.notes[name].append(f"{what} was left out: with it no assembly could run {name}")

    def _lend_scores(self, name: str, colocation: Colocation) -> None:
        """A follower's scores (and its own followers') count for this service."""
        factor = colocation_factor(colocation.score)
        via = _follower_text(colocation)
        self.tables[name] = self._merge(name, colocation.service, self.tables[name], factor, via)

    def _merge(self, name: str, follower: str, table: Table, factor: float, via: str) -> Table:
        if follower in self.merging:
            return table  # a colocation cycle: merged once
        self.merging.add(follower)
        try:
            work = self._add_follower(table, follower, factor, via)
            if not self._available(work):
                if self._available(table):
                    self._left_out(name, f"the preference of {follower}")
                return table
            for colocation in self.followers.get(follower, ()):
                next_factor = colocation_factor(colocation.score, negative=factor < 0)
                next_via = _follower_text(colocation)
                work = self._merge(name, colocation.service, work, next_factor, next_via)
            return work
        finally:
            self.merging.discard(follower)

    def _add_follower(self, table: Table, follower: str, factor: float, via: str) -> Table:
        theirs = self.tables[follower]
        work = dict(table)
        for assembly, current in table.items():
            own = theirs.get(assembly)
            score = own.value if own is not None and self._up(assembly) else -INFINITY
            if factor < 0 and score < 0:
                continue  # avoiding where it may not run is no preference for it
            amount = attenuated(score, factor)
            there = (
                f"scores {score_text(score)} there" if score > -INFINITY else "may not run there"
            )
            work[assembly] = current.plus(amount, f"from {via}: it {there}")
        return work

    def keep_with_leaders(self) -> None:
        """In a colocation cycle a service can be assigned before a service it must
        run with, which may then run nowhere: it does not run either (ours)."""
        stranded = self._stranded()
        while stranded is not None:
            name, leader = stranded
            self.assigned[name] = None
            self.held[name] = f"must run with {leader}, which runs nowhere"
            self.ties.pop(name, None)
            stranded = self._stranded()

    def _stranded(self) -> tuple[str, str] | None:
        """A service placed while a service it must run with is placed nowhere."""
        for name, leaders in self.leaders.items():
            for colocation in leaders:
                if (
                    colocation.score >= INFINITY
                    and self.assigned.get(name) is not None
                    and self.assigned.get(colocation.with_) is None
                ):
                    return name, colocation.with_
        return None

    # -- choosing -------------------------------------------------------------------

    def _hold(self, name: str) -> tuple[str | None, str] | None:
        """Our rules: a failed stop keeps it there; an unknown copy keeps it from moving."""
        service = self.services[name]
        for assembly in copies_of(service, self.obs):
            if self._up(assembly) and stop_failed(self._status(assembly, name)):
                return assembly, f"its stop failed on {assembly}: it stays until it is fenced"
        for assembly in copies_of(service, self.obs):
            state = self.obs.assembly(assembly).state
            if state in _UNCERTAIN and possibly_active(self._status(assembly, name)):
                why = f"it may still run on {assembly} (assembly {assembly} is {state})"
                return self._stays(name, current_location(service, self.obs)), why
        return None

    def _stays(self, name: str, current: str | None) -> str | None:
        """``current`` if it may stay there, else None."""
        score = self.tables[name].get(current or "")
        if current is None or score is None or score.value < 0 or not self._up(current):
            return None
        return current

    def _best(self, name: str) -> str | None:
        """Pacemaker's best node: highest score, then fewer resources, then where it
        runs, then the lower name; above 0 it stays where it runs on a tie."""
        table = self.tables[name]
        running = self.running_on(self.services[name])
        current = running[0] if running else None
        ranked = sorted(table, key=lambda a: self._rank(table, a, current))
        if not ranked:
            return None
        chosen = ranked[0]
        if table[chosen].value > 0 and self._up(chosen) and current in table:
            tied = [a for a in ranked if table[a].value == table[chosen].value]
            if current in tied:
                chosen = current
        self._explain_tie(name, ranked, chosen, current)
        if table[chosen].value < 0 or not self._up(chosen):
            return None
        return chosen

    def _rank(self, table: Table, assembly: str, current: str | None) -> tuple[int, int, int, str]:
        value = table[assembly].value if self._up(assembly) else -INFINITY
        return (-value, self.load[assembly], 0 if assembly == current else 1, assembly)

    def _explain_tie(
        self, name: str, ranked: Sequence[str], chosen: str, current: str | None
    ) -> None:
        table = self.tables[name]
        value = table[chosen].value
        rivals = [a for a in ranked if a != chosen and self._up(a) and table[a].value == value]
        if not rivals or value < 0 or not self._up(chosen):
            return
        rival = rivals[0]
        tie = f"tied at {score_text(value)} with {rival}: "
        if chosen == current and (value > 0 or self.load[chosen] == self.load[rival]):
            tie += f"it already runs on {chosen}"
        elif self.load[chosen] != self.load[rival]:
            tie += (
                f"fewer resources placed on {chosen}"
                f" ({self.load[chosen]} against {self.load[rival]})"
            )
        else:
            tie += f"{chosen} comes first by name"
        self.ties[name] = tie


def _follower_text(colocation: Colocation) -> str:
    return (
        f"{colocation.service}, colocated with {colocation.with_} at {score_text(colocation.score)}"
    )


def _colocation_term(
    leader: str, score: int, where: str | None, assembly: str
) -> tuple[int, str] | None:
    """What a colocation with ``leader`` (placed ``where``) does to one assembly."""
    if where is None and score >= INFINITY:
        return -INFINITY, f"must run with {leader}, which runs nowhere"
    if where is None:
        return -score, f"colocated with {leader}, which runs nowhere"
    if assembly == where and score <= -INFINITY:
        return -INFINITY, f"must not run with {leader}"
    if assembly == where and score < INFINITY:
        return score, f"colocated with {leader}, which runs here"
    if assembly != where and score >= INFINITY:
        return -INFINITY, f"must run with {leader}, which runs on {where}"
    return None


def _sorted_colocations(
    colocations: Iterable[Colocation], key: Callable[[Colocation], str]
) -> dict[str, list[Colocation]]:
    """Colocations by service (``key``), each list in Pacemaker's order: by the
    primitive id of the other end (``svc_NAME``, underscores doubled)."""
    found: dict[str, list[Colocation]] = {}
    for colocation in colocations:
        if colocation.score != 0:  # Pacemaker ignores a colocation of score 0
            found.setdefault(key(colocation), []).append(colocation)
    for name, entries in found.items():
        found[name] = sorted(entries, key=lambda c: _other_id(c, name))
    return found


def _other_id(colocation: Colocation, name: str) -> str:
    other = colocation.with_ if colocation.service == name else colocation.service
    return "svc_" + other.replace("_", "__")
