"""The built-in planner: orderings, chains and fans across assemblies, recovery."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

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
    start_order,
)
from dpe.policy import plan
from dpe.states import AssemblyState, ResourceState
from foundation.model import Deployable, ResourceId, parse, parse_resource

A = AssemblyState
R = ResourceState
K = ActionKind


def document(
    layout: Mapping[str, list[str | dict[str, Any]]],
    constraints: list[str] = (),  # type: ignore[assignment]
) -> Deployable:
    """``{"a": ["x", "y"]}`` plus ``["a/x -> b/y"]``; a resource may be a full dict."""
    assemblies = [
        {
            "name": name,
            "resources": [r if isinstance(r, dict) else {"name": r, "type": "Dummy"} for r in rs],
        }
        for name, rs in layout.items()
    ]
    pairs = [c.split(" -> ") for c in constraints]
    return parse(
        {
            "name": "dep",
            "assemblies": assemblies,
            "constraints": [{"first": f, "then": t} for f, t in pairs],
        }
    )


def rid(text: str) -> ResourceId:
    assembly, resource = text.split("/")
    return ResourceId(assembly, resource)


def observed(
    doc: Deployable,
    *,
    goal: Goal = Goal.RUN,
    assemblies: Mapping[str, AssemblyState] | None = None,
    default: ResourceState = R.RUNNING,
    monitoring: bool = True,
    **states: ResourceState,
) -> Observed:
    """Every assembly RUNNING and every resource ``default`` unless named (``a_x=R.FAILED``)."""
    assembly_states = {a.name: A.RUNNING for a in doc.assemblies} | dict(assemblies or {})
    statuses = {
        name: AssemblyStatus(state, f"10.0.0.{i + 1}", f"{name}.example")
        for i, (name, state) in enumerate(assembly_states.items())
    }
    resources = {}
    for r in doc.resource_ids():
        state = states.get(f"{r.assembly}_{r.resource}", default)
        definition = doc.resource(r)
        assert definition is not None
        params = resolve(definition, statuses) or {}
        resources[r] = ResourceStatus(
            state=state,
            applied=Applied.of(definition, params) if state is R.RUNNING else None,
            monitoring=monitoring and state is R.RUNNING,
        )
    return Observed(goal, statuses, resources)


def act(kind: ActionKind, subject: str, interval: float = 0.0) -> Action:
    if "/" in subject:
        assembly, resource = subject.split("/")
        return Action(kind, assembly, resource, interval)
    return Action(kind, subject)


def kinds(p: Plan, kind: ActionKind) -> list[str]:
    return [
        f"{a.assembly}/{a.resource}" if a.resource else a.assembly
        for a in p.actions
        if a.kind is kind
    ]


def before(p: Plan, first: Action, then: Action) -> bool:
    """``first`` is (transitively) ordered before ``then``."""
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


def unordered(p: Plan, one: Action, other: Action) -> bool:
    return not before(p, one, other) and not before(p, other, one)


# ---------------------------------------------------------------------------


def test_assemblies_without_instances_are_created_and_nothing_else() -> None:
    doc = document({"a": ["x"], "b": ["y"]}, ["a/x -> b/y"])
    p = plan(doc, observed(doc, assemblies={"a": A.STOPPED, "b": A.STOPPED}))
    assert p.actions == (act(K.CREATE, "a"), act(K.CREATE, "b"))
    assert p.edges == frozenset()


def test_nothing_is_scheduled_on_an_assembly_being_created_or_connected() -> None:
    doc = document({"a": ["x"], "b": ["y"]})
    p = plan(doc, observed(doc, assemblies={"a": A.CREATING, "b": A.CONNECTING}, default=R.UNKNOWN))
    assert p.empty


def test_unknown_resources_are_probed_first_and_nothing_else_is_decided() -> None:
    doc = document({"a": ["x"], "b": ["y"]}, ["a/x -> b/y"])
    obs = observed(doc, default=R.STOPPED, b_y=R.UNKNOWN, assemblies={"c": A.STOPPED})
    p = plan(doc, obs)
    assert kinds(p, K.PROBE) == ["b/y"]
    assert kinds(p, K.START) == []


def test_nothing_is_decided_while_an_adopted_instance_connects() -> None:
    """A new DPE adopts a and b; b answered first.  b/y follows a/x, which may well
    run on a: it is neither stopped nor started again until a is connected and probed."""
    doc = document({"a": ["x"], "b": ["y"]}, ["a/x -> b/y"])
    obs = observed(doc, assemblies={"a": A.CONNECTING}, default=R.RUNNING, a_x=R.UNKNOWN)
    adopting = dict(obs.assemblies) | {"a": AssemblyStatus(A.CONNECTING, adopting=True)}
    p = plan(doc, Observed(obs.goal, adopting, obs.resources))
    assert kinds(p, K.STOP) == [] and kinds(p, K.START) == []
    created = plan(doc, obs)  # a new instance connecting: what ran on a is gone
    assert kinds(created, K.STOP) == ["b/y"]


def test_start_in_constraint_order_across_assemblies_with_monitors_after() -> None:
    doc = document({"a": ["x"], "b": ["y"], "c": ["z"]}, ["b/y -> c/z", "a/x -> b/y"])
    p = plan(doc, observed(doc, default=R.STOPPED))
    assert kinds(p, K.START) == ["a/x", "b/y", "c/z"]
    assert before(p, act(K.START, "a/x"), act(K.START, "b/y"))
    assert before(p, act(K.START, "b/y"), act(K.START, "c/z"))
    assert before(p, act(K.START, "c/z"), act(K.MONITOR, "c/z", 10.0))
    assert unordered(p, act(K.MONITOR, "a/x", 10.0), act(K.START, "b/y"))


def test_a_fan_starts_its_branches_in_parallel_after_the_root() -> None:
    doc = document(
        {"a": ["db"], "b": ["web"], "c": ["worker"]}, ["a/db -> b/web", "a/db -> c/worker"]
    )
    p = plan(doc, observed(doc, default=R.STOPPED))
    assert before(p, act(K.START, "a/db"), act(K.START, "b/web"))
    assert before(p, act(K.START, "a/db"), act(K.START, "c/worker"))
    assert unordered(p, act(K.START, "b/web"), act(K.START, "c/worker"))


def test_a_join_waits_for_every_first() -> None:
    doc = document({"a": ["x"], "b": ["y"], "c": ["z"]}, ["a/x -> c/z", "b/y -> c/z"])
    p = plan(doc, observed(doc, default=R.STOPPED, a_x=R.RUNNING))
    assert kinds(p, K.START) == ["b/y", "c/z"]
    assert before(p, act(K.START, "b/y"), act(K.START, "c/z"))


def test_a_failed_resource_restarts_with_its_dependants_stopped_first_and_started_after() -> None:
    doc = document(
        {"a": ["x"], "b": ["y"], "c": ["z", "w"]}, ["a/x -> b/y", "b/y -> c/z", "c/z -> c/w"]
    )
    p = plan(doc, observed(doc, b_y=R.FAILED))
    assert kinds(p, K.STOP) == ["c/w", "c/z", "b/y"]
    assert kinds(p, K.START) == ["b/y", "c/z", "c/w"]
    chain = [
        act(K.STOP, "c/w"),
        act(K.STOP, "c/z"),
        act(K.STOP, "b/y"),
        act(K.START, "b/y"),
        act(K.START, "c/z"),
        act(K.START, "c/w"),
    ]
    for first, then in itertools.pairwise(chain):
        assert before(p, first, then), (first, then)
    assert not [a for a in p.actions if a.resource == "x"]  # what it follows is untouched


def test_a_failed_resource_without_dependants_is_stopped_then_started() -> None:
    doc = document({"a": ["x", "y"]})
    p = plan(doc, observed(doc, a_y=R.FAILED))
    assert p.actions == (
        act(K.STOP, "a/y"),
        act(K.START, "a/y"),
        act(K.MONITOR, "a/y", 10.0),
    )
    assert before(p, act(K.STOP, "a/y"), act(K.START, "a/y"))


def test_a_converged_deployable_plans_nothing() -> None:
    doc = document({"a": ["x"], "b": ["y"]}, ["a/x -> b/y"])
    assert plan(doc, observed(doc)).empty


def test_running_resources_without_a_monitor_get_one() -> None:
    doc = document({"a": [{"name": "x", "type": "Dummy", "monitor_interval": "5s"}]})
    p = plan(doc, observed(doc, monitoring=False))
    assert p.actions == (act(K.MONITOR, "a/x", 5.0),)


def test_a_dependant_running_before_what_it_follows_is_restarted_after_it() -> None:
    # found this way after adoption: y runs, x does not
    doc = document({"a": ["x"], "b": ["y"]}, ["a/x -> b/y"])
    p = plan(doc, observed(doc, a_x=R.STOPPED))
    assert kinds(p, K.STOP) == ["b/y"]
    assert before(p, act(K.STOP, "b/y"), act(K.START, "b/y"))
    assert before(p, act(K.START, "a/x"), act(K.START, "b/y"))


def test_nothing_runs_on_a_failed_assembly_it_is_fenced_then_created() -> None:
    doc = document({"victim": ["andy"], "bar": ["angus", "other"]}, ["victim/andy -> bar/angus"])
    p = plan(doc, observed(doc, assemblies={"victim": A.FAILED}))
    assert before(p, act(K.FENCE, "victim"), act(K.CREATE, "victim"))
    assert not [a for a in p.actions if a.assembly == "victim" and a.resource]
    assert kinds(p, K.STOP) == ["bar/angus"]  # it cannot run without andy
    assert kinds(p, K.START) == []
    assert p.blocked == {rid("bar/angus"): "waiting for victim/andy (assembly victim is failed)"}


def test_new_address_restarts_the_referencing_resource_and_its_dependants_in_order() -> None:
    cfg = {"name": "cfg", "type": "Dummy", "parameters": {"peer": {"ref": "victim:ipaddress"}}}
    doc = document(
        {"victim": ["andy"], "bar": [cfg, "angus"]},
        ["victim/andy -> bar/angus", "bar/cfg -> bar/angus"],
    )
    before_restart = observed(doc)
    old = before_restart.resources[rid("bar/cfg")]
    assert old.applied is not None and dict(old.applied.params) == {"peer": "10.0.0.1"}
    # victim came back with a new address; andy was probed stopped there
    assemblies = dict(before_restart.assemblies)
    assemblies["victim"] = AssemblyStatus(A.RUNNING, "10.0.0.99", "victim.example")
    resources = dict(before_restart.resources)
    resources[rid("victim/andy")] = ResourceStatus(R.STOPPED)
    p = plan(doc, Observed(Goal.RUN, assemblies, resources))
    assert kinds(p, K.STOP) == ["bar/angus", "bar/cfg"]
    assert kinds(p, K.START) == ["victim/andy", "bar/cfg", "bar/angus"]
    assert p.params[act(K.START, "bar/cfg")] == {"peer": "10.0.0.99"}
    assert p.params[act(K.STOP, "bar/cfg")] == {"peer": "10.0.0.1"}  # stopped as started
    assert before(p, act(K.STOP, "bar/angus"), act(K.STOP, "bar/cfg"))
    assert before(p, act(K.START, "bar/cfg"), act(K.START, "bar/angus"))
    assert before(p, act(K.START, "victim/andy"), act(K.START, "bar/angus"))


def test_a_reference_to_a_down_assembly_keeps_a_running_resource_and_blocks_a_stopped_one() -> None:
    cfg = {"name": "cfg", "type": "Dummy", "parameters": {"peer": {"ref": "victim:hostname"}}}
    doc = document({"victim": ["andy"], "bar": [cfg]})
    running = observed(doc, assemblies={"victim": A.CREATING})
    assert plan(doc, running).empty
    stopped = observed(doc, assemblies={"victim": A.CREATING}, bar_cfg=R.STOPPED)
    p = plan(doc, stopped)
    assert p.empty
    assert p.blocked == {rid("bar/cfg"): "waiting for the hostname of assembly victim"}


def test_unrecoverable_resources_are_left_alone_and_block_what_follows_them() -> None:
    doc = document({"a": ["x"], "b": ["y"], "c": ["z"]}, ["a/x -> b/y", "b/y -> c/z"])
    p = plan(doc, observed(doc, a_x=R.UNRECOVERABLE, b_y=R.STOPPED))
    assert not [a for a in p.actions if a.resource == "x"]
    assert kinds(p, K.STOP) == ["c/z"]
    assert kinds(p, K.START) == []
    reason = "depends on a/x, which is unrecoverable"
    assert p.blocked == {rid("b/y"): reason, rid("c/z"): reason}


def test_stopping_goes_in_reverse_order_then_fences_each_instance() -> None:
    doc = document({"a": ["x"], "b": ["y", "z"]}, ["a/x -> b/y", "b/y -> b/z"])
    p = plan(doc, observed(doc, goal=Goal.STOP, b_z=R.STOPPED))
    assert kinds(p, K.STOP) == ["b/y", "a/x"]
    assert before(p, act(K.STOP, "b/y"), act(K.STOP, "a/x"))
    assert before(p, act(K.STOP, "b/y"), act(K.FENCE, "b"))
    assert before(p, act(K.STOP, "a/x"), act(K.FENCE, "a"))
    assert kinds(p, K.START) == kinds(p, K.CREATE) == []


def test_stopping_fences_other_assemblies_at_once_and_leaves_a_failed_stop_to_the_fence() -> None:
    doc = document({"a": ["x"], "b": ["y"]})
    obs = observed(doc, goal=Goal.STOP, assemblies={"b": A.CONNECTING})
    failed_stop = ResourceStatus(R.FAILED, last_op="stop", last_rc=1)
    obs = Observed(obs.goal, obs.assemblies, {**obs.resources, rid("a/x"): failed_stop})
    p = plan(doc, obs)
    assert p.actions == (act(K.FENCE, "a"), act(K.FENCE, "b"))


def test_stopping_probes_unknown_resources_before_fencing_their_instance() -> None:
    doc = document({"a": ["x"], "b": ["y"]})
    p = plan(doc, observed(doc, goal=Goal.STOP, a_x=R.UNKNOWN, assemblies={"b": A.FAILED}))
    assert set(p.actions) == {act(K.PROBE, "a/x"), act(K.FENCE, "b")}


def test_stopping_fences_an_adopted_instance_only_once_connected_and_probed() -> None:
    """A DPE that adopts in order to stop: what runs on the instance is stopped
    by its agents before the instance goes; a new instance connecting goes at once."""
    doc = document({"a": ["x"], "b": ["y"]})
    obs = observed(doc, goal=Goal.STOP, a_x=R.UNKNOWN, assemblies={"a": A.CONNECTING})
    adopting = dict(obs.assemblies) | {"a": AssemblyStatus(A.CONNECTING, adopting=True)}
    p = plan(doc, Observed(obs.goal, adopting, obs.resources))
    assert kinds(p, K.FENCE) == []
    assert act(K.FENCE, "a") in plan(doc, obs).actions


def test_resources_and_assemblies_removed_from_the_document_are_stopped_and_fenced() -> None:
    old = document({"a": ["x", "gone"], "old": ["p", "q"]}, ["old/p -> old/q"])
    new = document({"a": ["x"]})
    obs = observed(old)
    orphans = {
        r: d for r in old.resource_ids() if new.resource(r) is None if (d := old.resource(r))
    }
    p = plan(new, Observed(Goal.RUN, obs.assemblies, obs.resources, orphans, old.constraints))
    assert kinds(p, K.STOP) == ["old/q", "old/p", "a/gone"]
    assert before(p, act(K.STOP, "old/q"), act(K.STOP, "old/p"))
    assert before(p, act(K.STOP, "old/p"), act(K.FENCE, "old"))
    assert kinds(p, K.FENCE) == ["old"]
    assert kinds(p, K.START) == kinds(p, K.CREATE) == []


def test_a_changed_agent_restarts_the_resource() -> None:
    doc = document({"a": ["x"]})
    obs = observed(doc)
    stale = ResourceStatus(
        R.RUNNING, applied=Applied("ocf:heartbeat:Stateful", ()), monitoring=True
    )
    p = plan(doc, Observed(Goal.RUN, obs.assemblies, {rid("a/x"): stale}))
    assert kinds(p, K.STOP) == kinds(p, K.START) == ["a/x"]


def test_actions_carry_their_parameters() -> None:
    doc = document({"a": [{"name": "x", "type": "Dummy", "parameters": {"fake": "1"}}]})
    p = plan(doc, observed(doc, default=R.UNKNOWN))
    assert p.params[act(K.PROBE, "a/x")] == {"fake": "1"}
    p = plan(doc, observed(doc, default=R.STOPPED))
    assert p.params[act(K.START, "a/x")] == {"fake": "1"}
    assert p.params[act(K.MONITOR, "a/x", 10.0)] == {"fake": "1"}


def test_start_order_keeps_document_order_between_unrelated_resources() -> None:
    doc = document({"a": ["x", "y", "z"]}, ["a/z -> a/x"])
    assert start_order(doc.resource_ids(), doc.constraints) == [rid("a/y"), rid("a/z"), rid("a/x")]


def test_applied_round_trips_through_its_stored_form() -> None:
    resource = parse_resource({"name": "x", "type": "Dummy"})
    applied = Applied.of(resource, {"b": "2", "a": "1"})
    assert Applied.from_dict(applied.to_dict()) == applied
    assert applied.to_dict() == {"agent": "ocf:heartbeat:Dummy", "params": {"a": "1", "b": "2"}}


def test_a_resource_backing_off_is_not_started_before_its_time_nor_what_follows_it() -> None:
    doc = document({"a": ["x"], "b": ["y"]}, ["a/x -> b/y"])
    obs = observed(doc, default=R.STOPPED)
    waiting = ResourceStatus(R.STOPPED, retry_at=105.0)
    obs = Observed(Goal.RUN, obs.assemblies, {**obs.resources, rid("a/x"): waiting}, now=100.0)
    p = plan(doc, obs)
    assert p.empty
    assert p.wake_at == 105.0
    assert p.blocked[rid("b/y")] == "waiting for a/x, which is backing off after failures in a row"
    later = Observed(Goal.RUN, obs.assemblies, obs.resources, now=105.0)
    assert kinds(plan(doc, later), K.START) == ["a/x", "b/y"]
