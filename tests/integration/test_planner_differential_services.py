"""Placement against Pacemaker's scheduler: ties, stickiness, colocation chains and cycles.

The CIB (``dpe.cib``) gives each service its location scores on its candidate
assemblies, its ``resource-stickiness``, ``migration-threshold`` and
``failure-timeout``, its fail count on each assembly and its colocations;
``crm_simulate`` decides where it runs.  Explicit cases first: the acceptance
(stickiness against the preference difference), the four placement defects of
issue 14 each from its two-assembly reproduction, a colocation cycle of three,
and a failed stop.

Then generated cases, made to be hard rather than easy: few distinct scores
(often all equal), stickiness often 0, several services competing for the
same assemblies with pinned resources already there, services running on tied
assemblies, colocation chains, stars, pairs both ways and cycles at INFINITY,
-INFINITY or finite scores, fail counts below, at and over the migration
threshold (expired or not), assemblies lost under colocated groups, moves an
administrator asked for, copies whose start or stop failed.  Every
generated CIB is checked by ``crm_verify`` too.  The plans must agree exactly,
but within the scope of a documented difference (``dpe.pacemaker.DIFFERENCES``):
a resource or a service's copy with a hard error (scoped as in
``test_planner_differential``), a service whose stop failed and what must run
or is ordered with it (``failed-stop``), a service kept stopped in a
colocation cycle (``colocation-cycle``); how often each was met is printed.

The default is 400 cases (two minutes on two cores busy with other work, most of
it crm_simulate starting up); ``PCLOUD_DIFF_SERVICE_CASES`` (or
``PCLOUD_DIFF_CASES``) asks for more.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from dpe.assignment import stop_failed
from dpe.cib import build_cib
from dpe.pacemaker import DIFFERENCES, Comparison, available, compare, run_scheduler, verify
from dpe.placement import Decision, place
from dpe.planner import Applied, AssemblyStatus, Goal, Observed, Plan, ResourceStatus
from dpe.states import AssemblyState, ResourceState
from foundation.model import Deployable, ResourceId, parse, service_id
from tests.integration.test_planner_differential import (
    Case,
    connected,
    descendants,
    our_answer,
    scopes,
    summary_mismatches,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not available(), reason="crm_simulate is not installed"),
]

A = AssemblyState
R = ResourceState
NOW = 1000.0
INF = "INFINITY"
CASES = int(
    os.environ.get("PCLOUD_DIFF_SERVICE_CASES") or os.environ.get("PCLOUD_DIFF_CASES") or "400"
)
BATCH = 8
WORKERS = max(2, os.cpu_count() or 2)


# ---------------------------------------------------------------------------
# building cases by hand


def document(
    services: list[dict[str, Any]],
    colocations: Sequence[dict[str, Any]] = (),
    pinned: Mapping[str, list[str]] | None = None,
    constraints: Sequence[tuple[str, str]] = (),
    assemblies: Sequence[str] = ("a", "b", "c"),
) -> Deployable:
    return parse(
        {
            "name": "d",
            "assemblies": [
                {
                    "name": a,
                    "resources": [{"name": r, "type": "Dummy"} for r in (pinned or {}).get(a, [])],
                }
                for a in assemblies
            ],
            "services": [{"type": "Dummy"} | s for s in services],
            "colocations": list(colocations),
            "constraints": [{"first": f, "then": t} for f, t in constraints],
        }
    )


def service(
    name: str, scores: Mapping[str, object], stickiness: object = 0, **extra: Any
) -> dict[str, Any]:
    locations = [{"assembly": a, "score": s} for a, s in scores.items()]
    return {"name": name, "locations": locations, "stickiness": stickiness} | extra


def case(
    doc: Deployable,
    running: Mapping[str, str] | None = None,
    assemblies: Mapping[str, AssemblyState] | None = None,
    failed: Mapping[str, str] | None = None,
    failures: Mapping[str, Sequence[float]] | None = None,
    copies: Mapping[str, ResourceStatus] | None = None,
    moves: Mapping[str, str] | None = None,
) -> Case:
    """Pinned resources running; service copies stopped (probed) but where ``running``
    (or ``failed``: its monitor), or as ``copies`` says (``"a/db"``)."""
    states = {a.name: (assemblies or {}).get(a.name, A.RUNNING) for a in doc.assemblies}
    statuses = {a: AssemblyStatus(s, f"10.0.0.{i}", a) for i, (a, s) in enumerate(states.items())}
    resources: dict[ResourceId, ResourceStatus] = {}
    for rid in [*doc.resource_ids(), *doc.service_placements()]:
        definition = doc.resource(rid)
        assert definition is not None
        applied = Applied.of(definition, {})
        if str(rid) in (copies or {}):
            resources[rid] = (copies or {})[str(rid)]
        elif rid.assembly == (running or {}).get(rid.resource) or not doc.service(rid.resource):
            resources[rid] = ResourceStatus(R.RUNNING, "start", 0, applied, monitoring=True)
        elif rid.assembly == (failed or {}).get(rid.resource):
            resources[rid] = ResourceStatus(R.FAILED, "monitor", 7, applied)
        else:
            resources[rid] = ResourceStatus(R.STOPPED, "probe", 7)
    service_failures = {
        ResourceId(*key.split("/")): tuple(times) for key, times in (failures or {}).items()
    }
    observed = Observed(
        Goal.RUN,
        statuses,
        resources,
        now=NOW,
        service_failures=service_failures,
        move_requests=dict(moves or {}),
    )
    return Case(doc, observed)


# ---------------------------------------------------------------------------
# both answers


def pacemaker_answer(c: Case) -> Plan:
    """Pacemaker's plan; its summary must match the graph for the pinned resources
    (a service's summary line -- "move db" -- names no assembly of ours)."""
    transition = run_scheduler(build_cib(c.document, c.observed), execute=True)
    pinned = tuple(
        line for line in transition.summary if line.resource and not line.resource.is_service
    )
    assert not summary_mismatches(replace(transition, summary=pinned))
    return transition.plan()


@dataclass
class Verdict:
    case: Case
    exact: Comparison
    outside: Comparison  # outside the documented differences
    ours: Plan
    theirs: Plan
    decisions: Mapping[str, Decision]
    differences: tuple[str, ...] = ()  # the documented differences in scope

    def report(self) -> str:
        lines = [describe(self.case), "ours:", *[f"  {x}" for x in self.ours.describe()]]
        lines += ["pacemaker:", *[f"  {x}" for x in self.theirs.describe()]]
        lines += ["placement:", *[f"  {x}" for d in self.decisions.values() for x in d.explain()]]
        return "\n".join([*lines, "differences:", *self.outside.describe()])


def judge(c: Case) -> Verdict:
    """Both plans, compared outside the documented differences (pinned resources only)."""
    ours, theirs = our_answer(c), pacemaker_answer(c)
    found = scopes(c)
    decisions = place(c.document, c.observed)
    found |= {"failed-stop": failed_stop_scope(c), "colocation-cycle": cycle_scope(c, decisions)}
    ignore = set().union(*found.values())
    names = tuple(sorted(name for name, scope in found.items() if scope))
    exact, outside = compare(ours, theirs), compare(ours, theirs, ignore)
    return Verdict(c, exact, outside, ours, theirs, decisions, names)


def failed_stop_scope(c: Case) -> set[ResourceId]:
    """A service whose stop failed: it stays in both; Pacemaker blocks it there,
    with what is ordered with it and what must run with it (``failed-stop``);
    we stop it again."""
    scope: set[ResourceId] = set()
    for entry in c.document.services:
        failed = [c.observed.resource(ResourceId(a, entry.name)) for a in entry.assemblies]
        if any(stop_failed(s) for s in failed):
            for name in followers(c, entry.name) | kept_apart(c, entry.name):
                for rid in connected(c, service_id(name)):
                    scope |= {ResourceId(a, rid.resource) for a in _copies(c, rid.resource)}
                    scope.add(rid)
    return scope


def kept_apart(c: Case, name: str) -> set[str]:
    """The services that must not run with ``name`` (-INFINITY, either way)."""
    return {
        x.with_ if x.service == name else x.service
        for x in c.document.colocations
        if x.score <= -1_000_000 and name in (x.service, x.with_)
    }


def followers(c: Case, name: str) -> set[str]:
    """``name`` and the services that must run with it, directly or not."""
    found, todo = {name}, [name]
    while todo:
        leader = todo.pop()
        for x in c.document.colocations:
            if x.with_ == leader and x.score >= 1_000_000 and x.service not in found:
                found.add(x.service)
                todo.append(x.service)
    return found


def cycle_scope(c: Case, decisions: Mapping[str, Decision]) -> set[ResourceId]:
    """Services kept stopped because the leader they were placed before, in a
    colocation cycle, runs nowhere (``colocation-cycle``), and what follows them."""
    scope: set[ResourceId] = set()
    for name, decision in decisions.items():
        if decision.target is None and decision.reason.startswith("must run with"):
            for rid in descendants(c, service_id(name)):
                scope |= {ResourceId(a, name) for a in _copies(c, name)} | {rid}
    return scope


def _copies(c: Case, name: str) -> tuple[str, ...]:
    entry = c.document.service(name)
    return entry.assemblies if entry else ()


def agree(c: Case) -> Verdict:
    verdict = judge(c)
    assert verdict.outside.agree, verdict.report()
    return verdict


def answers(c: Case) -> tuple[set[str], set[str]]:
    ours, theirs = our_answer(c), pacemaker_answer(c)
    return (
        {str(a) for a in ours.actions if a.resource},
        {str(a) for a in theirs.actions if a.resource},
    )


def describe(c: Case) -> str:
    lines = [str(c)]
    for entry in c.document.services:
        places = ", ".join(f"{loc.assembly}:{loc.score}" for loc in entry.locations)
        copies = {
            a: str(c.observed.resource(ResourceId(a, entry.name)).state) for a in entry.assemblies
        }
        extra = f"threshold {entry.migration_threshold} timeout {entry.failure_timeout:g}"
        lines.append(
            f"  service {entry.name} on {places} stickiness {entry.stickiness} {extra} {copies}"
        )
    lines += [f"  colocation {x.service} with {x.with_} {x.score}" for x in c.document.colocations]
    lines += [f"  failures {rid}: {times}" for rid, times in c.observed.service_failures.items()]
    lines += [f"  move {name} to {where}" for name, where in c.observed.move_requests.items()]
    return "\n".join(lines)


MOVE_BACK = {"stop b/db", "start a/db", "monitor a/db every 10 s"}


def started(c: Case) -> dict[str, str]:
    """Where Pacemaker starts or keeps each service (after agreeing with ours)."""
    verdict = agree(c)
    return {name: d.target or "" for name, d in verdict.decisions.items()}


# -- the acceptance, side by side --------------------------------------------------


def test_stickiness_above_the_preference_difference_keeps_it_where_it_runs() -> None:
    doc = document([service("db", {"a": 100, "b": 50}, stickiness=60)])
    ours, theirs = answers(case(doc, running={"db": "b"}))
    assert ours == theirs == set()


def test_stickiness_below_the_preference_difference_moves_it_back() -> None:
    doc = document([service("db", {"a": 100, "b": 50}, stickiness=40)])
    c = case(doc, running={"db": "b"})
    ours, theirs = answers(c)
    assert ours == theirs == MOVE_BACK
    agree(c)  # the stop comes before the start in both


def test_a_failed_assembly_sends_the_service_to_the_next_best_in_both() -> None:
    doc = document(
        [service("db", {"a": 100, "b": 50, "c": 70})],
        pinned={"c": ["app"]},
        constraints=[("db", "c/app")],
    )
    c = case(doc, running={"db": "a"}, assemblies={"a": A.FAILED})
    ours, theirs = answers(c)
    assert {"start c/db", "stop c/app", "start c/app"} <= ours
    assert ours == theirs
    agree(c)


def test_colocation_and_anti_colocation_place_as_pacemaker_does() -> None:
    together = document(
        [service("db", {"a": 10, "b": 50}), service("cache", {"a": 100, "b": 0})],
        [{"service": "cache", "with": "db"}],
    )
    agree(case(together))
    apart = document(
        [service("db", {"a": 10, "b": 50}), service("replica", {"b": 100, "a": 0})],
        [{"service": "replica", "with": "db", "score": "-INFINITY"}],
    )
    agree(case(apart))
    agree(case(apart, running={"db": "b", "replica": "a"}, assemblies={"a": A.FAILED}))


# -- issue 14: each defect from its two-assembly reproduction ------------------------

TWO = ("a", "b")


def test_defect_1_a_running_service_is_not_moved_on_a_tie() -> None:
    doc = document([service("db", {"a": 50, "b": 50})], assemblies=TWO)
    c = case(doc, running={"db": "b"})
    assert answers(c) == (set(), set())


def test_defect_2_tied_services_are_spread_not_piled_up() -> None:
    doc = document(
        [service("s0", {"a": 10, "b": 10}), service("s1", {"a": 10, "b": 10})], assemblies=TWO
    )
    assert started(case(doc)) == {"s0": "a", "s1": "b"}


def test_defect_3_a_followers_fail_count_ban_keeps_the_group_off() -> None:
    doc = document(
        [
            service("db", {"a": 100, "b": 50}),
            service("cache", {"a": 0, "b": 0}, migration_threshold=1),
        ],
        [{"service": "cache", "with": "db"}],
        assemblies=TWO,
    )
    assert started(case(doc, failures={"a/cache": [990.0]})) == {"db": "b", "cache": "b"}


def test_defect_4_only_the_follower_that_leaves_no_assembly_is_dropped() -> None:
    doc = document(
        [service("db", {"a": 50, "b": 60}), service("cache", {"a": 100}), service("web", {"b": 0})],
        [{"service": "cache", "with": "db"}, {"service": "web", "with": "db"}],
        assemblies=TWO,
    )
    assert started(case(doc)) == {"db": "a", "cache": "a", "web": ""}


def test_a_colocation_cycle_of_three_is_accepted_and_placed_as_pacemaker_places_it() -> None:
    doc = document(
        [
            service("x", {"a": 10, "b": 20}),
            service("y", {"a": 30, "b": 0}),
            service("z", {"a": 0, "b": 15}),
        ],
        [
            {"service": "x", "with": "y"},
            {"service": "y", "with": "z"},
            {"service": "z", "with": "x"},
        ],
        assemblies=TWO,
    )
    assert verify(build_cib(doc).xml).ok
    assert started(case(doc)) == {"x": "b", "y": "b", "z": "b"}
    # running elsewhere, with enough stickiness to hold the whole ring there
    sticky = document(
        [service(n, {"a": 10, "b": 20}, stickiness=15) for n in ("x", "y", "z")],
        [
            {"service": "x", "with": "y"},
            {"service": "y", "with": "z"},
            {"service": "z", "with": "x"},
        ],
        assemblies=TWO,
    )
    assert started(case(sticky, running={"x": "a", "y": "a", "z": "a"})) == dict.fromkeys(
        "xyz", "a"
    )


def test_failed_stop_the_service_stays_where_its_stop_failed_in_both() -> None:
    """Its stop failed on a: Pacemaker (fencing off) blocks it there and starts it
    nowhere else; so do we, until the engine has fenced a.  Where we then stop
    it again and Pacemaker leaves it blocked is the documented ``failed-stop``."""
    doc = document([service("db", {"a": 0, "b": "INFINITY"})], assemblies=TWO)
    failed_stop = ResourceStatus(R.FAILED, "stop", 1, Applied("ocf:heartbeat:Dummy", ()))
    c = case(doc, copies={"a/db": failed_stop})
    ours, theirs = answers(c)
    assert "start b/db" not in ours | theirs
    assert theirs == set()
    assert ours == {"stop a/db", "start a/db", "monitor a/db every 10 s"}
    assert "failed-stop" in DIFFERENCES
    agree(c)


def test_failed_stop_what_must_not_run_with_it_does_not_start_beside_it() -> None:
    """replica must never run with db, and replica's stop failed on b (rc 5): it may
    still run there.  Pacemaker keeps only the dependent (replica) away from db and
    starts db on b, its best assembly, beside the blocked copy; we keep db off b
    until b is fenced (``failed-stop``), and start it on a."""
    doc = document(
        [service("db", {"a": 10, "b": 50}), service("replica", {"a": 0, "b": 20})],
        colocations=[{"service": "replica", "with": "db", "score": "-INFINITY"}],
        assemblies=TWO,
    )
    blocked = ResourceStatus(R.UNRECOVERABLE, "stop", 5, Applied("ocf:heartbeat:Dummy", ()))
    c = case(doc, copies={"b/replica": blocked})
    ours, theirs = answers(c)
    assert "start b/db" in theirs
    assert "start b/db" not in ours
    assert "start a/db" in ours
    assert "failed-stop" in judge(c).differences
    agree(c)


def test_colocation_cycle_a_service_whose_leader_runs_nowhere_stays_stopped() -> None:
    """x and y must run together (a cycle of two), and no assembly takes both.
    Pacemaker assigns y while x is being assigned (its loop breaker), then finds
    nowhere for x: y starts alone.  We keep y stopped: it must run with x.
    When x is ordered before something, Pacemaker schedules x's start, and its
    being unrunnable blocks y's start too: then both agree."""
    ring = [{"service": "x", "with": "y"}, {"service": "y", "with": "x"}]
    services = [service("x", {"a": 10}), service("y", {"b": 10})]
    alone = case(document(services, ring, pinned={"a": ["p"]}, assemblies=TWO))
    ours, theirs = answers(alone)
    assert (ours, theirs) == (set(), {"start b/y", "monitor b/y every 10 s"})
    assert (
        place(alone.document, alone.observed)["y"].reason == "must run with x, which runs nowhere"
    )
    assert "colocation-cycle" in DIFFERENCES
    agree(alone)  # the harness scopes it
    ordered = case(
        document(services, ring, pinned={"a": ["p"]}, constraints=[("x", "a/p")], assemblies=TWO)
    )
    assert answers(ordered) == ({"stop a/p"}, {"stop a/p"})


# -- generated cases ----------------------------------------------------------------

# listed in an order their names do not sort in; underscores are doubled in ids
ASSEMBLY_NAMES = ("b", "a_b", "a", "c-1")
SERVICE_NAMES = ("db", "s_1", "cache", "web", "q")
SCORE_SETS = (
    (0,),
    (10,),
    (INF,),
    (0, 10),
    (10, 50),
    (0, 10, 50, -10),
    (0, 50, INF, "-INFINITY"),
    (-20, 0, 20, 40, 60, 100, INF, "-INFINITY"),
)
STICKINESS = (0, 0, 0, 10, 40, 50, 100, INF)
COLOCATION_SCORES = (INF, INF, INF, "-INFINITY", 40, -40, 500000, -500000, 1)
SHAPES = ("none", "chain", "star", "cycle", "both ways", "random")
AGO = (0, 1, 29, 30, 31, 59, 60, 61, 200)  # seconds before now
PINNED = (
    ResourceStatus(R.RUNNING, "start", 0, monitoring=True),
    ResourceStatus(R.RUNNING, "start", 0, monitoring=True),
    ResourceStatus(R.STOPPED, "probe", 7),
    ResourceStatus(R.FAILED, "monitor", 7),
    ResourceStatus(R.STOPPED, "probe", 7, retry_at=NOW + 5),  # backing off
    ResourceStatus(R.UNRECOVERABLE, "start", 5),
)


RAN = Applied("ocf:heartbeat:Dummy", ())
COPIES = (  # a service's copy where it runs, or ran
    *[ResourceStatus(R.RUNNING, "start", 0, RAN, monitoring=True)] * 12,
    ResourceStatus(R.FAILED, "monitor", 7, RAN),
    ResourceStatus(R.FAILED, "monitor", 7, RAN),
    ResourceStatus(R.FAILED, "start", 1, RAN),
    ResourceStatus(R.FAILED, "stop", 1, RAN),  # held there (failed-stop)
    ResourceStatus(R.UNRECOVERABLE, "start", 5),  # banned there (hard-error-start)
    ResourceStatus(R.FAILED, "monitor", 5, RAN),  # banned there (hard-error-monitor)
    ResourceStatus(R.UNRECOVERABLE, "start", 6),  # not configured: banned everywhere
)
HARD_PROBE = ResourceStatus(R.STOPPED, "probe", 5)  # not installed there: banned


@st.composite
def colocations(draw: st.DrawFn, names: list[str]) -> list[dict[str, Any]]:
    if len(names) < 2:
        return []
    shape = draw(st.sampled_from(SHAPES))
    members = draw(st.permutations(names))[: draw(st.integers(2, len(names)))]
    pairs: list[tuple[str, str]] = []
    if shape in ("chain", "cycle"):
        pairs = list(itertools.pairwise(members))
    if shape == "cycle":
        pairs.append((members[-1], members[0]))
    if shape == "star":
        pairs = [(m, members[0]) for m in members[1:]]
    if shape == "both ways":
        pairs = [(members[0], members[1]), (members[1], members[0])]
    if shape == "random":
        edges = st.tuples(st.sampled_from(names), st.sampled_from(names))
        pairs = [(x, y) for x, y in draw(st.lists(edges, max_size=4)) if x != y]
    pairs = list(dict.fromkeys(pairs))
    return [
        {"service": x, "with": y, "score": draw(st.sampled_from(COLOCATION_SCORES))}
        for x, y in pairs
    ]


@st.composite
def service_docs(
    draw: st.DrawFn, name: str, assemblies: list[str], scores: tuple[object, ...]
) -> dict[str, Any]:
    fewest = 1 if draw(st.integers(0, 5)) == 0 else 2  # mostly two or more: room for ties
    candidates = draw(
        st.lists(st.sampled_from(assemblies), min_size=fewest, max_size=3, unique=True)
    )
    doc = service(
        name,
        {a: draw(st.sampled_from(scores)) for a in candidates},
        draw(st.sampled_from(STICKINESS)),
    )
    doc["migration_threshold"] = draw(st.sampled_from([0, 0, 1, 2, 3]))
    doc["failure_timeout"] = draw(st.sampled_from([0, 0, 30, 60]))
    return doc


@st.composite
def deployables(draw: st.DrawFn) -> Deployable:
    names = draw(st.lists(st.sampled_from(ASSEMBLY_NAMES), min_size=2, max_size=3, unique=True))
    scores = draw(st.sampled_from(SCORE_SETS))
    services = draw(st.lists(st.sampled_from(SERVICE_NAMES), min_size=1, max_size=4, unique=True))
    pinned = {a: [f"p{i}" for i in range(draw(st.integers(0, 2)))] for a in names}
    constraints = []
    if any(pinned.values()) and draw(st.booleans()):
        holder = draw(st.sampled_from([a for a in names if pinned[a]]))
        constraints.append((services[0], f"{holder}/p0"))
    return document(
        [draw(service_docs(n, names, scores)) for n in services],
        draw(colocations(services)),
        pinned,
        constraints,
        names,
    )


@st.composite
def cases(draw: st.DrawFn) -> Case:
    doc = draw(deployables())
    states = {
        a.name: draw(st.sampled_from([A.RUNNING] * 5 + [A.FAILED, A.STOPPED]))
        for a in doc.assemblies
    }
    copies: dict[str, ResourceStatus] = {}
    for rid in doc.resource_ids():
        copies[str(rid)] = draw(st.sampled_from(PINNED))
    failures: dict[str, list[float]] = {}
    moves: dict[str, str] = {}
    for entry in doc.services:
        if draw(st.integers(0, 19)) == 7:  # an administrator asked for a move (rare)
            moves[entry.name] = draw(st.sampled_from(entry.assemblies))
        if draw(st.integers(0, 19)) == 7:  # its probe found the agent missing there
            copies[f"{draw(st.sampled_from(entry.assemblies))}/{entry.name}"] = HARD_PROBE
        for assembly in entry.assemblies:
            ago = draw(st.lists(st.sampled_from(AGO), max_size=entry.migration_threshold + 1))
            if ago:
                failures[f"{assembly}/{entry.name}"] = [NOW - s for s in ago]
        where = draw(st.sampled_from([None, *entry.assemblies]))
        if where is None or states[where] is A.STOPPED:
            continue  # nothing runs on an assembly without an instance
        copy = f"{where}/{entry.name}"
        copies[copy] = draw(st.sampled_from(COPIES))
        if copies[copy].state is R.FAILED and copies[copy].last_op != "stop":
            failures.setdefault(copy, []).append(NOW)  # the failure is counted
    return case(doc, assemblies=states, failures=failures, copies=copies, moves=moves)


def tally(stats: Counter[str], verdict: Verdict) -> None:
    """What the case exercised: ties, stickiness 0, bans, groups left out, cycles."""
    c, decisions = verdict.case, verdict.decisions.values()
    stats["cases"] += 1
    stats["agree exactly" if verdict.exact.agree else "agree outside documented differences"] += 1
    if not verdict.exact.agree:
        for name in verdict.differences:
            stats[f"difference {name}"] += 1
    stats["tie broken"] += any(d.tie for d in decisions)
    stats["tie kept where it runs"] += any("already runs" in d.tie for d in decisions)
    stats["tie by resources placed"] += any("fewer resources" in d.tie for d in decisions)
    stats["tie by name"] += any("by name" in d.tie for d in decisions)
    stats["fail count ban"] += any(
        "migration threshold" in b for d in decisions for b in d.banned.values()
    )
    stats["follower ban"] += any(
        b.startswith("from ") for d in decisions for b in d.banned.values()
    )
    stats["preference left out"] += any(d.notes for d in decisions)
    stats["moves"] += any(d.moves and d.current and d.target for d in decisions)
    stats["move asked"] += bool(c.observed.move_requests)
    stats["cycle"] += _has_cycle(c.document)
    stats["-INFINITY colocation"] += any(x.score <= -1_000_000 for x in c.document.colocations)
    stats["lost assembly under a group"] += bool(c.document.colocations) and any(
        s.state is A.FAILED for s in c.observed.assemblies.values()
    )


def _has_cycle(doc: Deployable) -> bool:
    leaders = {x.service: set() for x in doc.colocations}
    for x in doc.colocations:
        leaders[x.service].add(x.with_)
    seen: set[str] = set()

    def reaches(start: str, name: str) -> bool:
        for leader in leaders.get(name, ()):
            if leader == start or (
                leader not in seen and (seen.add(leader) or reaches(start, leader))
            ):
                return True
        return False

    return any(reaches(name, name) for name in leaders)


def checked(c: Case) -> Verdict:
    """crm_verify accepts the CIB, and the plans agree."""
    verification = verify(build_cib(c.document, c.observed).xml)
    assert verification.ok, "\n".join([describe(c), *verification.messages])
    return judge(c)


@pytest.mark.timeout(max(300, CASES // 2))
@pytest.mark.filterwarnings("ignore:Generating overly large repr")  # our report says the case
def test_placement_agrees_with_pacemaker_on_generated_cases() -> None:
    stats: Counter[str] = Counter()
    pool = ThreadPoolExecutor(WORKERS)

    @settings(
        max_examples=-(-CASES // BATCH),
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # a failure reports its case: no slow shrinking
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.lists(cases(), min_size=BATCH, max_size=BATCH))
    def check(batch: list[Case]) -> None:
        for verdict in pool.map(checked, batch):
            assert verdict.outside.agree, verdict.report()
            tally(stats, verdict)

    with pool:
        check()
    print("placement differential:", dict(stats))
    assert stats["cases"] >= CASES
    for seen in ("tie kept where it runs", "tie by resources placed", "tie by name", "cycle"):
        assert stats[seen] > 0, (seen, dict(stats))  # the generator reaches the hard cases
