"""The built-in planner against Pacemaker's scheduler, on generated cases.

Hypothesis generates deployables (assemblies whose names share underscores,
resources with literal and reference parameters, chains, fans, joins and
random orders between them) and observed states (assemblies up, down, being
created or failed; resources unknown, starting, running with or without their
monitor and with the parameters they run with unchanged or stale, stopped,
failed with soft rc codes or timeouts, hard errors, backing off; removed
resources still running; the goal to run or to stop).  Each case is planned
by ``dpe.policy.plan`` and, exported with ``dpe.cib``, by ``crm_simulate -S``
(its saved transition graph);
the two must agree on which resources are probed, started, stopped,
restarted, monitored or left alone, on which assembly, and in what order.

Where the models differ on purpose the harness says so rather than skipping:

- ``probe-first`` and ``assembly-lifecycle`` change how the plans are put side
  by side (our probes, then our next plan once the probes said "not running",
  against Pacemaker's one graph; resource actions only);
- the other differences named in ``dpe.pacemaker.DIFFERENCES`` have a scope
  computed from the input alone (the resource, and what is ordered after it
  where the difference reaches that far): outside it the plans must still
  agree exactly, and how often each difference was seen is counted.

Every such difference also has an explicit test below with both answers.

The default is 1,000 cases (in batches run on a thread pool: crm_simulate is
~30 ms of process start-up); ``PCLOUD_DIFF_CASES`` asks for more.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from dpe.cib import build_cib
from dpe.pacemaker import (
    DIFFERENCES,
    Comparison,
    Transition,
    available,
    compare,
    run_scheduler,
)
from dpe.planner import (
    ActionKind,
    Applied,
    AssemblyStatus,
    Goal,
    Observed,
    Plan,
    ResourceStatus,
    resolve,
)
from dpe.policy import plan
from dpe.simulate import Windows, what_if
from dpe.states import AssemblyState, ResourceState
from foundation.model import Constraint, Deployable, ResourceId, parse

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not available(), reason="crm_simulate is not installed"),
]

A = AssemblyState
R = ResourceState
K = ActionKind

CASES = int(os.environ.get("PCLOUD_DIFF_CASES", "1000"))
BATCH = 8
WORKERS = max(2, os.cpu_count() or 2)
NOW = 1000.0

# names that share underscores, dots and dashes: ids must stay apart
ASSEMBLY_NAMES = ("a", "a_b", "b", "web-1", "db.2", "a_b_c")
RESOURCE_NAMES = ("x", "b_c", "c", "y-1", "z.9", "b", "c_x")
HARD = (2, 3, 4, 5, 6)
Planner = Callable[[Deployable, Observed], Plan]
SCOPED = (
    "hard-error-start",
    "hard-error-stop",
    "hard-error-probe",
    "hard-error-monitor",
    "failed-stop",
    "unresolved-reference",
)


# ---------------------------------------------------------------------------
# generating deployables


param_values = st.one_of(
    st.sampled_from(["1", "", "a b", "x=y", "ünï", "tab\there", "line\nbreak", "<&'\">"]),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=8),
)


@st.composite
def resource_docs(draw: st.DrawFn, name: str, assemblies: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = draw(
        st.dictionaries(st.sampled_from(["n", "fake", "state_dir"]), param_values, max_size=2)
    )
    if draw(st.integers(0, 2)) == 0:  # a reference to an assembly
        peer = draw(st.sampled_from(assemblies))
        params["peer"] = {"ref": f"{peer}:{draw(st.sampled_from(['ipaddress', 'hostname']))}"}
    doc: dict[str, Any] = {
        "name": name,
        "monitor_interval": draw(st.sampled_from([10, 5, 1, 0.5, 30, "1500ms"])),
        "parameters": params,
    }
    doc |= draw(
        st.sampled_from(
            [
                {"class": "ocf", "provider": "heartbeat", "type": "Dummy"},
                {"class": "ocf", "provider": "pacemaker", "type": "Stateful"},
                {"class": "lsb", "type": "nginx"},
                {"class": "systemd", "type": "sshd"},
            ]
        )
    )
    if draw(st.booleans()):
        doc["timeouts"] = {"start": draw(st.sampled_from([5, 20, 90])), "monitor": 7}
    return doc


def constraint_pairs(draw: st.DrawFn, count: int) -> set[tuple[int, int]]:
    """Chains, fans, joins and random edges, always from a lower to a higher index."""
    pairs: set[tuple[int, int]] = set()
    if count < 2:
        return pairs
    shape = draw(st.sampled_from(["none", "chain", "fan", "join", "random", "mixed"]))
    members = sorted(draw(st.sets(st.integers(0, count - 1), min_size=2, max_size=count)))
    if shape in ("chain", "mixed"):
        pairs |= set(itertools.pairwise(members))
    if shape == "fan":
        pairs |= {(members[0], m) for m in members[1:]}
    if shape == "join":
        pairs |= {(m, members[-1]) for m in members[:-1]}
    if shape in ("random", "mixed"):
        edges = st.tuples(st.integers(0, count - 1), st.integers(0, count - 1))
        pairs |= {(i, j) for i, j in draw(st.lists(edges, max_size=6)) if i < j}
    return pairs


@st.composite
def deployables(draw: st.DrawFn) -> Deployable:
    names = draw(st.lists(st.sampled_from(ASSEMBLY_NAMES), min_size=1, max_size=4, unique=True))
    assemblies, ids = [], []
    for name in names:
        rnames = draw(st.lists(st.sampled_from(RESOURCE_NAMES), max_size=4, unique=True))
        resources = [draw(resource_docs(r, names)) for r in rnames]
        assemblies.append({"name": name, "resources": resources})
        ids += [f"{name}/{r}" for r in rnames]
    order = draw(st.permutations(ids))  # constraints follow a random topological order
    pairs = constraint_pairs(draw, len(order))
    constraints = [{"first": order[i], "then": order[j]} for i, j in sorted(pairs)]
    return parse({"name": "d", "assemblies": assemblies, "constraints": constraints})


# ---------------------------------------------------------------------------
# generating observed states


@dataclass(frozen=True)
class Situation:
    """A resource's state with the op history that leads to it in the engine."""

    name: str
    state: ResourceState
    last_op: str | None = None
    rcs: tuple[int | None, ...] = (None,)
    runs: bool = False  # it has parameters it was started with


COMMON = (
    Situation("unknown", R.UNKNOWN),
    Situation("starting", R.STARTING, "probe", (7,)),
    Situation("stopping", R.STOPPING, "start", (0,)),
    Situation("stopped by probe", R.STOPPED, "probe", (7,)),
    Situation("stopped by stop", R.STOPPED, "stop", (0, 7)),
    Situation("running after start", R.RUNNING, "start", (0,), True),
    Situation("running after probe", R.RUNNING, "probe", (0, 8), True),
    Situation("running, monitored", R.RUNNING, "monitor", (0,), True),
    Situation("failed monitor", R.FAILED, "monitor", (1, 7), True),
    Situation("monitor timed out", R.FAILED, "monitor", (0,), True),
    Situation("failed start", R.FAILED, "start", (1,)),
    Situation("start timed out", R.FAILED, "probe", (7,)),
    Situation("failed probe", R.FAILED, "probe", (1,)),
)
HARD_ERRORS = (  # where most documented differences are: one draw in nine
    Situation("stopped, probe hard error", R.STOPPED, "probe", HARD),
    Situation("failed monitor, hard error", R.FAILED, "monitor", HARD, True),
    Situation("failed stop", R.FAILED, "stop", (1,), True),
    Situation("unrecoverable start", R.UNRECOVERABLE, "start", HARD),
    Situation("unrecoverable stop", R.UNRECOVERABLE, "stop", HARD),
)
situations = st.sampled_from(COMMON * 3 + HARD_ERRORS)

assembly_states = st.one_of(
    st.just(A.RUNNING), st.just(A.RUNNING), st.just(A.RUNNING), st.sampled_from(list(A))
)


@dataclass
class Case:
    document: Deployable
    observed: Observed
    notes: list[str] = field(default_factory=list)  # the situation of each resource

    def __str__(self) -> str:
        lines = [f"goal {self.observed.goal}"]
        lines += [f"assembly {n}: {s.state}" for n, s in self.observed.assemblies.items()]
        lines += self.notes
        lines += [f"order {c.first} -> {c.then}" for c in self.document.constraints]
        lines += [f"orphan order {c.first} -> {c.then}" for c in self.observed.orphan_constraints]
        return "\n  ".join(lines)


def resource_status(
    draw: st.DrawFn, doc: Deployable, rid: ResourceId, assemblies: Mapping[str, AssemblyStatus]
) -> tuple[ResourceStatus, str]:
    situation = draw(situations)
    rc = draw(st.sampled_from(situation.rcs))
    definition = doc.resource(rid)
    assert definition is not None
    applied = None
    if situation.runs:
        applied = draw(applied_for(definition, assemblies))
    retry_at = None
    if situation.state not in (R.RUNNING, R.UNRECOVERABLE):
        retry_at = draw(st.sampled_from([None, None, NOW + 5.0, NOW - 5.0]))
    monitoring = situation.state is R.RUNNING and draw(st.booleans())
    status = ResourceStatus(situation.state, situation.last_op, rc, applied, monitoring, retry_at)
    note = f"{rid}: {situation.name} (rc {rc}{', monitored' if monitoring else ''}"
    note += f", applied {applied.params if applied else None}, retry_at {retry_at})"
    return status, note


@st.composite
def applied_for(
    draw: st.DrawFn, definition: Any, assemblies: Mapping[str, AssemblyStatus]
) -> Applied | None:
    kind = draw(st.sampled_from(["current", "current", "stale", "other agent", "unknown"]))
    params = resolve(definition, assemblies)
    if kind == "unknown" or (params is None and kind == "current"):
        return None
    if kind == "other agent":
        return Applied("ocf:heartbeat:anything", tuple(sorted((params or {}).items())))
    if kind == "stale" or params is None:
        return Applied(definition.agent, (("n", "stale"),))
    return Applied.of(definition, params)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    full = draw(deployables())
    assemblies = {
        a.name: AssemblyStatus(draw(assembly_states), f"10.0.0.{i + 1}", f"{a.name}.example")
        for i, a in enumerate(full.assemblies)
    }
    resources, notes = {}, []
    for rid in full.resource_ids():
        resources[rid], note = resource_status(draw, full, rid, assemblies)
        notes.append(note)
    doc, orphans, orphan_constraints = draw(removals(full))
    if orphans and draw(st.booleans()):  # a whole assembly removed, its instance still up
        gone = draw(st.sampled_from(sorted({r.assembly for r in orphans})))
        doc = doc.with_assemblies(tuple(a for a in doc.assemblies if a.name != gone))
        doc = replace(doc, constraints=_within(doc, doc.constraints))
    goal = draw(st.sampled_from([Goal.RUN, Goal.RUN, Goal.RUN, Goal.STOP]))
    observed = Observed(goal, assemblies, resources, orphans, orphan_constraints, NOW)
    return Case(doc, observed, notes)


@st.composite
def removals(
    draw: st.DrawFn, full: Deployable
) -> tuple[Deployable, dict[ResourceId, Any], tuple[Constraint, ...]]:
    """Maybe remove some resources from the document: they become orphans."""
    ids = list(full.resource_ids())
    if not ids or draw(st.integers(0, 3)):
        return full, {}, ()
    removed = set(draw(st.lists(st.sampled_from(ids), min_size=1, max_size=2)))
    assemblies = tuple(
        replace(
            a, resources=tuple(r for r in a.resources if (a.name, r.name) not in _names(removed))
        )
        for a in full.assemblies
    )
    doc = replace(full, assemblies=assemblies)
    doc = replace(doc, constraints=_within(doc, full.constraints))
    orphans = {rid: full.resource(rid) for rid in removed}
    kept = tuple(c for c in full.constraints if c.first in removed and c.then in removed)
    return doc, orphans, kept


def _names(rids: set[ResourceId]) -> set[tuple[str, str]]:
    return {(r.assembly, r.resource) for r in rids}


def _within(doc: Deployable, constraints: tuple[Constraint, ...]) -> tuple[Constraint, ...]:
    known = set(doc.resource_ids())
    return tuple(c for c in constraints if c.first in known and c.then in known)


# ---------------------------------------------------------------------------
# the two answers


def our_answer(case: Case, planner: Planner = plan) -> Plan:
    """Our plan; when it probes, the probes and then the plan once they said "stopped"."""
    first = planner(case.document, case.observed)
    probes = [a for a in first.actions if a.kind is K.PROBE]
    if not probes:
        return first
    resources = dict(case.observed.resources)
    for probe in probes:
        assert probe.rid is not None
        old = case.observed.resource(probe.rid)
        resources[probe.rid] = ResourceStatus(R.STOPPED, "probe", 7, retry_at=old.retry_at)
    second = planner(case.document, replace(case.observed, resources=resources))
    return Plan((*first.actions, *second.actions), first.edges | second.edges)


def pacemaker_answer(case: Case) -> Plan:
    transition = run_scheduler(build_cib(case.document, case.observed), execute=True)
    assert not summary_mismatches(transition), summary_mismatches(transition)
    return transition.plan()


_SUMMARY_ACTIONS = {
    "start": {K.START},
    "stop": {K.STOP},
    "restart": {K.STOP, K.START},
    "recover": {K.STOP, K.START},
}


def summary_mismatches(transition: Transition) -> list[str]:
    """Transition Summary lines the graph we read does not hold."""
    done = {(a.kind, a.rid) for a in (*transition.actions, *transition.waiting)}
    wrong = []
    for line in transition.summary:
        if line.blocked or line.resource is None:
            continue
        expected = {(kind, line.resource) for kind in _SUMMARY_ACTIONS.get(line.action, {K.CREATE})}
        if not expected <= done:
            wrong.append(f"{line.action} {line.resource} ({line.reason})")
    return wrong


def scopes(case: Case) -> dict[str, set[ResourceId]]:
    """Where the documented differences may show, from the input alone."""
    obs = case.observed
    found: dict[str, set[ResourceId]] = {}
    for rid, status in obs.resources.items():
        if obs.assembly(rid.assembly).state is not A.RUNNING or not _defined(case, rid):
            continue
        name = _difference(status)
        if name is None and status.state is R.RUNNING and _waits_for_a_reference(case, rid):
            name = "unresolved-reference"
        if name == "hard-error-start":
            found.setdefault(name, set()).add(rid)
        elif name in ("failed-stop", "hard-error-stop"):  # blocked, maybe running: what
            # it is ordered after cannot stop before it, nor restart
            found.setdefault(name, set()).update(connected(case, rid))
        elif name is not None:
            found.setdefault(name, set()).update({rid, *descendants(case, rid)})
    return found


def _difference(status: ResourceStatus) -> str | None:
    if status.state is R.UNRECOVERABLE and status.last_op == "start":
        return "hard-error-start"
    if status.state is R.UNRECOVERABLE and status.last_op == "stop":
        return "hard-error-stop"
    if status.state is R.STOPPED and status.last_op == "probe" and status.last_rc in HARD:
        return "hard-error-probe"
    if status.state is R.FAILED and status.last_op == "monitor" and status.last_rc in HARD:
        return "hard-error-monitor"
    if status.state is R.FAILED and status.last_op == "stop":
        return "failed-stop"
    return None


def _waits_for_a_reference(case: Case, rid: ResourceId) -> bool:
    definition = case.document.resource(rid) or case.observed.orphans.get(rid)
    return definition is not None and resolve(definition, case.observed.assemblies) is None


def _defined(case: Case, rid: ResourceId) -> bool:
    return case.document.resource(rid) is not None or rid in case.observed.orphans


def descendants(case: Case, rid: ResourceId) -> set[ResourceId]:
    """Everything ordered after ``rid``, directly or not."""
    return _reachable(case, rid, lambda c: [(c.first, c.then)])


def connected(case: Case, rid: ResourceId) -> set[ResourceId]:
    """Everything ordered before or after ``rid``, directly or through others."""
    return _reachable(case, rid, lambda c: [(c.first, c.then), (c.then, c.first)])


def _reachable(
    case: Case, rid: ResourceId, steps: Callable[[Constraint], list[tuple[ResourceId, ResourceId]]]
) -> set[ResourceId]:
    constraints = (*case.document.constraints, *case.observed.orphan_constraints)
    arcs = [arc for c in constraints for arc in steps(c)]
    found = {rid}
    todo = [rid]
    while todo:
        current = todo.pop()
        for start, end in arcs:
            if start == current and end not in found:
                found.add(end)
                todo.append(end)
    return found


@dataclass
class Verdict:
    case: Case
    exact: Comparison
    outside: Comparison
    scopes: dict[str, set[ResourceId]]
    ours: Plan
    theirs: Plan

    def report(self) -> str:
        lines = [f"case:\n  {self.case}", "ours:", *[f"  {x}" for x in self.ours.describe()]]
        lines += ["pacemaker:", *[f"  {x}" for x in self.theirs.describe()]]
        lines += ["outside documented differences:", *self.outside.describe()]
        return "\n".join(lines)


def judge(case: Case, planner: Planner = plan) -> Verdict:
    ours, theirs = our_answer(case, planner), pacemaker_answer(case)
    found = scopes(case)
    ignore = set().union(*found.values()) if found else set()
    return Verdict(case, compare(ours, theirs), compare(ours, theirs, ignore), found, ours, theirs)


# ---------------------------------------------------------------------------
# the differential test


def tally(stats: Counter[str], verdict: Verdict) -> None:
    stats["cases"] += 1
    stats["agree" if verdict.exact.agree else "differ only where documented"] += 1
    if not verdict.exact.agree:
        for name in verdict.scopes:
            stats[name] += 1
    kinds = {a.kind for a in verdict.ours.actions}
    if K.PROBE in kinds:
        stats["probe-first"] += 1
    if kinds & {K.CREATE, K.FENCE}:
        stats["assembly-lifecycle"] += 1


@pytest.mark.timeout(max(300, CASES // 3))
def test_the_planner_agrees_with_pacemaker_on_generated_cases() -> None:
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
        for verdict in pool.map(judge, batch):
            assert verdict.outside.agree, verdict.report()
            tally(stats, verdict)

    with pool:
        check()
    print("differential:", dict(stats))
    assert stats["cases"] >= CASES
    assert stats["agree"] > stats["cases"] // 2
    for name in (*SCOPED, "probe-first", "assembly-lifecycle"):  # the generator reaches each
        assert stats[name] > 0, (name, dict(stats))


def test_the_harness_knows_every_documented_difference() -> None:
    services = {"colocation-cycle"}  # services only: test_planner_differential_services
    assert set(DIFFERENCES) == {
        *SCOPED,
        "probe-first",
        "assembly-lifecycle",
        "escalation",
        *services,
    }


def test_the_harness_catches_a_planner_that_forgets_an_order_or_an_action() -> None:
    case = small_case(
        constraints=("a/w -> a/x", "a/x -> b/y"), a_x=ResourceStatus(R.FAILED, "monitor", 7)
    )
    assert judge(case).exact.agree

    def unordered(document: Deployable, observed: Observed) -> Plan:
        p = plan(document, observed)
        return replace(p, edges=frozenset((a, b) for a, b in p.edges if a.rid == b.rid))

    def unmonitored(document: Deployable, observed: Observed) -> Plan:
        p = plan(document, observed)
        kept = tuple(a for a in p.actions if a.kind is not K.MONITOR)
        return Plan(kept, frozenset((a, b) for a, b in p.edges if b in kept))

    forgot_order = judge(case, unordered).outside
    assert forgot_order.order_only_second and not forgot_order.only_first
    forgot_monitor = judge(case, unmonitored).outside
    assert {str(a) for a in forgot_monitor.only_second} == {
        "monitor a/x every 10 s",
        "monitor b/y every 10 s",
    }


# ---------------------------------------------------------------------------
# each intentional difference, with both answers


UP = AssemblyStatus(A.RUNNING, "10.0.0.1", "a.example")


def small_case(
    constraints: tuple[str, ...] = ("a/x -> b/y",),
    goal: Goal = Goal.RUN,
    assemblies: Mapping[str, AssemblyState] | None = None,
    resources: Mapping[str, dict[str, Any]] | None = None,
    **states: ResourceStatus,
) -> Case:
    """Resources ``a/x``, ``b/y`` (and ``a/w``), all running unless given (``a_x=...``)."""
    layout: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
    for text in ("a/w", "a/x", "b/y"):
        assembly, name = text.split("/")
        layout[assembly].append((resources or {}).get(text, {"name": name, "type": "Dummy"}))
    doc = parse(
        {
            "name": "d",
            "assemblies": [{"name": n, "resources": rs} for n, rs in layout.items()],
            "constraints": [
                {"first": f, "then": t} for f, t in (c.split(" -> ") for c in constraints)
            ],
        }
    )
    statuses = {
        n: AssemblyStatus((assemblies or {}).get(n, A.RUNNING), f"10.0.0.{i}", n)
        for i, n in enumerate(layout, 1)
    }
    observed: dict[ResourceId, ResourceStatus] = {}
    for rid in doc.resource_ids():
        definition = doc.resource(rid)
        assert definition is not None
        applied = Applied.of(definition, resolve(definition, statuses) or {})
        running = ResourceStatus(R.RUNNING, "start", 0, applied, monitoring=True)
        observed[rid] = states.get(f"{rid.assembly}_{rid.resource}", running)
    return Case(doc, Observed(goal, statuses, observed, now=NOW))


def answers(case: Case) -> tuple[set[str], set[str]]:
    """Both plans' resource actions, as text."""
    ours, theirs = our_answer(case), pacemaker_answer(case)
    return (
        {str(a) for a in ours.actions if a.resource},
        {str(a) for a in theirs.actions if a.resource},
    )


def documented(case: Case, name: str) -> None:
    """The harness sees this difference here, and the plans agree outside it."""
    verdict = judge(case)
    assert name in verdict.scopes
    assert not verdict.exact.agree
    assert verdict.outside.agree, verdict.report()


def restart(subject: str) -> set[str]:
    return {f"stop {subject}", f"start {subject}", f"monitor {subject} every 10 s"}


def test_probe_first_we_probe_then_plan_pacemaker_plans_ahead() -> None:
    case = small_case(a_x=ResourceStatus(R.UNKNOWN), b_y=ResourceStatus(R.UNKNOWN))
    first = plan(case.document, case.observed)
    assert {str(a) for a in first.actions} == {"probe a/x", "probe b/y"}
    ours, theirs = answers(case)
    assert theirs == {"probe a/x", "probe b/y", *restart("b/y")} - {"stop b/y"} | {
        "start a/x",
        "monitor a/x every 10 s",
    }
    assert ours == theirs  # our probes, then our plan once they said "stopped"
    assert judge(case).exact.agree


def test_assembly_lifecycle_is_ours_pacemaker_only_stops_what_follows() -> None:
    case = small_case(assemblies={"a": A.FAILED})
    ours = plan(case.document, case.observed)
    assert {str(a) for a in ours.actions} == {"fence a", "create a", "stop b/y"}
    assert answers(case) == ({"stop b/y"}, {"stop b/y"})


def test_escalation_is_the_engines_pacemaker_recovers_in_place() -> None:
    escalating = {"name": "x", "type": "Dummy", "escalation": {"failures": 2, "period": 60}}
    case = small_case(resources={"a/x": escalating})
    windows = Windows(resources={ResourceId("a", "x"): [NOW - 5]})
    ours = what_if(case.document, case.observed, ["a/x"], windows=windows)
    assert ours.notes == ("a/x: 2 failures in 60 s: escalating to assembly",)
    assert {str(a) for a in ours.plan.actions} == {"fence a", "create a", "stop b/y"}
    failed = Case(case.document, ours.observed)
    failed_in_place = small_case(
        resources={"a/x": escalating}, a_x=ResourceStatus(R.FAILED, "monitor", 7)
    )
    _, theirs = answers(failed_in_place)
    assert theirs == restart("a/x") | restart("b/y")  # no notion of a failure window
    assert answers(failed) == ({"stop b/y"}, {"stop b/y"})  # the assembly failure: agreed


def test_hard_error_start_pacemaker_also_stops_it() -> None:
    case = small_case(a_x=ResourceStatus(R.UNRECOVERABLE, "start", 5))
    assert answers(case) == ({"stop b/y"}, {"stop b/y", "stop a/x"})
    documented(case, "hard-error-start")


def test_hard_error_probe_we_try_a_start_pacemaker_bans_it() -> None:
    case = small_case(a_x=ResourceStatus(R.STOPPED, "probe", 5))
    ours, theirs = answers(case)
    assert ours == {"start a/x", "monitor a/x every 10 s", *restart("b/y")}
    assert theirs == {"stop b/y"}
    documented(case, "hard-error-probe")


def test_hard_error_monitor_we_restart_pacemaker_stops_and_bans() -> None:
    case = small_case(a_x=ResourceStatus(R.FAILED, "monitor", 5))
    ours, theirs = answers(case)
    assert ours == restart("a/x") | restart("b/y")
    assert theirs == {"stop a/x", "stop b/y"}
    documented(case, "hard-error-monitor")


def test_hard_error_stop_we_go_on_pacemaker_blocks_what_it_follows() -> None:
    case = small_case(
        constraints=("a/w -> a/x",),
        a_w=ResourceStatus(R.FAILED, "monitor", 7),
        a_x=ResourceStatus(R.UNRECOVERABLE, "stop", 5),
    )
    ours, theirs = answers(case)
    assert ours == restart("a/w")
    assert theirs == set()
    documented(case, "hard-error-stop")


def test_failed_stop_we_stop_again_or_leave_it_to_the_fence_pacemaker_blocks() -> None:
    failed_stop = ResourceStatus(R.FAILED, "stop", 1)
    running = small_case(a_x=failed_stop)
    assert answers(running) == (restart("a/x") | restart("b/y"), {"stop b/y"})
    documented(running, "failed-stop")
    stopping = small_case(goal=Goal.STOP, a_x=failed_stop)
    ours, theirs = answers(stopping)
    assert ours == theirs == {"stop a/w", "stop b/y"}  # a/x: left to the fence, or blocked


def test_unresolved_reference_we_hold_a_running_resource_pacemaker_restarts_it() -> None:
    peer = {"name": "y", "type": "Dummy", "parameters": {"peer": {"ref": "a:ipaddress"}}}
    case = small_case(
        constraints=(),
        resources={"b/y": peer},
        assemblies={"a": A.CREATING},
        b_y=ResourceStatus(
            R.RUNNING, "start", 0, Applied("ocf:heartbeat:anything", ()), monitoring=True
        ),
    )
    assert answers(case) == (set(), restart("b/y"))  # a changed agent: we wait for a
    documented(case, "unresolved-reference")
