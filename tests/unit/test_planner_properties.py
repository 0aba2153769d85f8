"""Planner properties over random deployables and observed states.

Orderings always hold, nothing touches an assembly that is not running, and
carrying plans out (every action succeeding) converges to everything running.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from dpe.planner import (
    Action,
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
from dpe.states import AssemblyState, ResourceState
from foundation.model import Deployable, ResourceId, parse

K = ActionKind
ASSEMBLIES = ("a", "b", "c")


@st.composite
def deployables(draw: st.DrawFn) -> Deployable:
    layout = {name: draw(st.integers(0, 3)) for name in ASSEMBLIES}
    ids = [f"{a}/r{i}" for a, n in layout.items() for i in range(n)]
    # edges only from lower to higher index: never a cycle
    pairs = draw(
        st.lists(st.tuples(st.integers(0, 8), st.integers(0, 8)), max_size=10).map(
            lambda ps: {(i, j) for i, j in ps if i < j < len(ids)}
        )
    )
    refs = draw(st.lists(st.sampled_from(ASSEMBLIES), max_size=2))
    assemblies = []
    for name, count in layout.items():
        resources = []
        for i in range(count):
            params: dict[str, object] = {"n": str(i)}
            if refs and i == 0:
                params["peer"] = {"ref": f"{refs[0]}:ipaddress"}
            resources.append({"name": f"r{i}", "type": "Dummy", "parameters": params})
        assemblies.append({"name": name, "resources": resources})
    constraints = [{"first": ids[i], "then": ids[j]} for i, j in sorted(pairs)]
    return parse({"name": "d", "assemblies": assemblies, "constraints": constraints})


resource_states = st.sampled_from(list(ResourceState))
assembly_states = st.sampled_from(list(AssemblyState))


@st.composite
def situations(draw: st.DrawFn) -> tuple[Deployable, Observed]:
    doc = draw(deployables())
    assemblies = {
        a.name: AssemblyStatus(draw(assembly_states), f"10.0.0.{draw(st.integers(1, 3))}", a.name)
        for a in doc.assemblies
    }
    resources = {}
    for rid in doc.resource_ids():
        state = draw(resource_states)
        stale = draw(st.booleans())
        applied = Applied("ocf:heartbeat:Dummy", (("n", "stale"),)) if stale else None
        monitoring = state is ResourceState.RUNNING and draw(st.booleans())
        resources[rid] = ResourceStatus(state, applied=applied, monitoring=monitoring)
    goal = draw(st.sampled_from(list(Goal)))
    return doc, Observed(goal, assemblies, resources)


def before(p: Plan, first: Action, then: Action) -> bool:
    preds = p.predecessors()
    seen, todo = set(), [then]
    while todo:
        for pred in preds[todo.pop()]:
            if pred == first:
                return True
            if pred not in seen:
                seen.add(pred)
                todo.append(pred)
    return False


def action(kind: ActionKind, rid: ResourceId) -> Action:
    return Action(kind, rid.assembly, rid.resource)


@settings(max_examples=300, deadline=None)
@given(situations())
def test_orderings_hold_and_failed_or_busy_assemblies_are_left_alone(
    situation: tuple[Deployable, Observed],
) -> None:
    doc, obs = situation
    p = plan(doc, obs)
    actions = set(p.actions)
    assert len(actions) == len(p.actions)
    assert all(first in actions and then in actions for first, then in p.edges)
    for a in p.actions:
        assert not before(p, a, a), f"cycle through {a}"
        if a.resource:
            assert obs.assembly(a.assembly).state is AssemblyState.RUNNING, a
            assert obs.resource(a.rid).state is not ResourceState.UNRECOVERABLE, a  # type: ignore[arg-type]
    for c in doc.constraints:
        start_then, start_first = action(K.START, c.then), action(K.START, c.first)
        if start_then in actions:
            first_stays = obs.resource(c.first).state is ResourceState.RUNNING and not any(
                a.rid == c.first and a.kind is not K.MONITOR for a in actions
            )
            assert first_stays or before(p, start_first, start_then), c
        stop_first, stop_then = action(K.STOP, c.first), action(K.STOP, c.then)
        if stop_first in actions and stop_then in actions:
            assert before(p, stop_then, stop_first), c
    for a in p.actions:
        if a.kind is K.START and action(K.STOP, a.rid) in actions:  # type: ignore[arg-type]
            assert before(p, action(K.STOP, a.rid), a)  # type: ignore[arg-type]
        if a.kind is K.CREATE and Action(K.FENCE, a.assembly) in actions:
            assert before(p, Action(K.FENCE, a.assembly), a)


def carry_out(doc: Deployable, obs: Observed, p: Plan, generation: int) -> Observed:
    """What the world looks like after every action of ``p`` succeeded."""
    assemblies = dict(obs.assemblies)
    resources = dict(obs.resources)
    for a in p.actions:  # tuple order is a valid order for these effects
        if a.kind is K.FENCE:
            assemblies[a.assembly] = AssemblyStatus(AssemblyState.STOPPED)
            for rid in resources:
                if rid.assembly == a.assembly:
                    resources[rid] = ResourceStatus()
    for a in p.actions:
        if a.kind is K.CREATE:
            address = f"10.1.{generation}.{ASSEMBLIES.index(a.assembly)}"
            assemblies[a.assembly] = AssemblyStatus(AssemblyState.RUNNING, address, a.assembly)
        elif a.rid is not None:
            resources[a.rid] = effect(doc, a, resources[a.rid], p)
    return Observed(obs.goal, assemblies, resources)


def effect(doc: Deployable, a: Action, status: ResourceStatus, p: Plan) -> ResourceStatus:
    if a.kind is K.PROBE:
        return replace(status, state=ResourceState.STOPPED, last_op="probe")
    if a.kind is K.STOP:
        return ResourceStatus(ResourceState.STOPPED, last_op="stop", last_rc=0)
    if a.kind is K.START:
        definition = doc.resource(a.rid)  # type: ignore[arg-type]
        assert definition is not None
        applied = Applied.of(definition, p.params[a])
        return ResourceStatus(ResourceState.RUNNING, "start", 0, applied)
    return replace(status, monitoring=True)


def settle_assemblies(obs: Observed) -> Observed:
    """Instances being created or connected come up; failed ones stay failed."""
    up = (AssemblyState.CREATING, AssemblyState.CONNECTING, AssemblyState.UNKNOWN)
    assemblies = {
        name: replace(s, state=AssemblyState.RUNNING) if s.state in up else s
        for name, s in obs.assemblies.items()
    }
    # an instance being destroyed (fenced, or on a stop) is gone once it is done
    going = (AssemblyState.FENCING, AssemblyState.STOPPING)
    assemblies = {
        name: replace(s, state=AssemblyState.STOPPED) if s.state in going else s
        for name, s in assemblies.items()
    }
    return replace(obs, assemblies=assemblies)


@settings(max_examples=200, deadline=None)
@given(situations())
def test_carrying_out_plans_converges(situation: tuple[Deployable, Observed]) -> None:
    doc, obs = situation
    obs = settle_assemblies(obs)
    for generation in range(8):
        p = plan(doc, obs)
        if p.empty:
            break
        obs = carry_out(doc, obs, p, generation)
    else:
        raise AssertionError(f"no convergence: {p.describe()}")
    if obs.goal is Goal.STOP:
        assert all(s.state is AssemblyState.STOPPED for s in obs.assemblies.values())
        return
    assert all(s.state is AssemblyState.RUNNING for s in obs.assemblies.values())
    for rid in doc.resource_ids():
        status = obs.resource(rid)
        if status.state is ResourceState.UNRECOVERABLE or rid in p.blocked:
            continue
        assert status.state is ResourceState.RUNNING, (rid, status)
        assert status.monitoring
        definition = doc.resource(rid)
        assert definition is not None
        params = resolve(definition, obs.assemblies)
        assert params is not None
        # no record of what it was started with: kept running, never restarted on a guess
        assert status.applied in (None, Applied.of(definition, params))
