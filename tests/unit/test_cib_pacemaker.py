"""Reading Pacemaker's transition graphs, and the Pacemaker planner with a stand-in.

No crm_simulate here: the graphs are written by hand in Pacemaker's format
(``tests/integration/test_planner_differential*.py`` runs the real one).
"""

from __future__ import annotations

from dpe.cib import Cib, build_cib
from dpe.pacemaker import (
    DIFFERENCES,
    PacemakerPlanner,
    Transition,
    compare,
    orderings,
    read_graph,
)
from dpe.planner import (
    Action,
    ActionKind,
    Applied,
    AssemblyStatus,
    Goal,
    Observed,
    Plan,
    ResourceStatus,
)
from dpe.states import AssemblyState, ResourceState
from foundation.model import Deployable, ResourceId, parse

K = ActionKind
A = AssemblyState
R = ResourceState


def doc() -> Deployable:
    return parse(
        {
            "name": "dep",
            "assemblies": [
                {
                    "name": "a",
                    "resources": [{"name": "x", "type": "Dummy", "monitor_interval": 1.5}],
                },
                {
                    "name": "b",
                    "resources": [
                        {
                            "name": "y",
                            "type": "Dummy",
                            "parameters": {"peer": {"ref": "a:ipaddress"}},
                        }
                    ],
                },
            ],
            "constraints": [{"first": "a/x", "then": "b/y"}],
        }
    )


def act(kind: ActionKind, subject: str, interval: float = 0.0) -> Action:
    assembly, _, resource = subject.partition("/")
    return Action(kind, assembly, resource or None, interval)


def rsc_op(ident: int, rsc: str, op: str, node: str, interval_ms: int = 0) -> str:
    return (
        f'<rsc_op id="{ident}" operation="{op}" operation_key="{rsc}_{op}_{interval_ms}" '
        f'on_node="{node}" on_node_uuid="{node}"><primitive id="{rsc}" class="ocf" '
        f'provider="heartbeat" type="Dummy"/><attributes CRM_meta_interval="{interval_ms}"/>'
        "</rsc_op>"
    )


def synapse(ident: int, action: str, *inputs: str) -> str:
    triggers = "".join(f"<trigger>{i}</trigger>" for i in inputs)
    return f'<synapse id="{ident}"><action_set>{action}</action_set><inputs>{triggers}</inputs></synapse>'


def graph(*synapses: str) -> str:
    return f'<transition_graph transition_id="0">{"".join(synapses)}</transition_graph>'


def cib() -> Cib:
    return build_cib(doc())


def test_graph_ops_become_our_actions_with_their_order() -> None:
    text = graph(
        synapse(0, rsc_op(1, "rsc_a_x", "monitor", "a")),
        synapse(1, rsc_op(2, "rsc_a_x", "start", "a"), rsc_op(1, "rsc_a_x", "monitor", "a")),
        synapse(2, rsc_op(3, "rsc_a_x", "monitor", "a", 1500), rsc_op(2, "rsc_a_x", "start", "a")),
        synapse(3, rsc_op(4, "rsc_b_y", "stop", "b")),
    )
    transition = read_graph(text, cib())
    assert set(transition.actions) == {
        act(K.PROBE, "a/x"),
        act(K.START, "a/x"),
        act(K.MONITOR, "a/x", 1.5),
        act(K.STOP, "b/y"),
    }
    assert transition.edges == {
        (act(K.PROBE, "a/x"), act(K.START, "a/x")),
        (act(K.START, "a/x"), act(K.MONITOR, "a/x", 1.5)),
    }


def test_orderings_through_pseudo_events_are_kept_and_the_events_dropped() -> None:
    pseudo = '<pseudo_event id="9" operation="all_stopped" operation_key="all_stopped"/>'
    text = graph(
        synapse(0, rsc_op(1, "rsc_b_y", "stop", "b")),
        synapse(1, pseudo, rsc_op(1, "rsc_b_y", "stop", "b")),
        synapse(2, rsc_op(2, "rsc_a_x", "stop", "a"), pseudo),
        synapse(3, rsc_op(3, "rsc_a_x", "cancel", "a"), pseudo),
    )
    transition = read_graph(text, cib())
    assert transition.actions == (act(K.STOP, "b/y"), act(K.STOP, "a/x"))
    assert transition.edges == {(act(K.STOP, "b/y"), act(K.STOP, "a/x"))}
    assert "pseudo_event all_stopped" in transition.dropped
    assert any("cancel" in d for d in transition.dropped)


def test_an_action_waiting_for_one_the_graph_does_not_hold_never_runs() -> None:
    missing = rsc_op(12, "rsc_a_x", "start", "a")  # blocked: not in the graph
    text = graph(
        synapse(0, rsc_op(1, "rsc_b_y", "stop", "b")),
        synapse(1, rsc_op(2, "rsc_b_y", "start", "b"), rsc_op(1, "rsc_b_y", "stop", "b"), missing),
        synapse(2, rsc_op(3, "rsc_b_y", "monitor", "b", 10000), rsc_op(2, "rsc_b_y", "start", "b")),
    )
    transition = read_graph(text, cib())
    assert transition.actions == (act(K.STOP, "b/y"),)
    assert set(transition.waiting) == {act(K.START, "b/y"), act(K.MONITOR, "b/y", 10.0)}
    assert len([d for d in transition.dropped if "cannot run" in d]) == 2


# ---------------------------------------------------------------------------
# the planner


def observed(**states: ResourceState) -> Observed:
    d = doc()
    assemblies = {
        "a": AssemblyStatus(A.RUNNING, "10.0.0.1", "a"),
        "b": AssemblyStatus(A.RUNNING, "10.0.0.2", "b"),
    }
    resources = {
        r: ResourceStatus(states.get(r.resource, R.STOPPED), "probe", 7) for r in d.resource_ids()
    }
    return Observed(Goal.RUN, assemblies, resources)


class StandIn:
    """A scheduler that answers a fixed transition and remembers the CIB it was given."""

    def __init__(self, transition: Transition) -> None:
        self.transition = transition
        self.cibs: list[Cib] = []

    def __call__(self, cib: Cib) -> Transition:
        self.cibs.append(cib)
        return self.transition


def test_the_pacemaker_planner_takes_the_resource_actions_and_gives_them_parameters() -> None:
    start_x, start_y = act(K.START, "a/x"), act(K.START, "b/y")
    scheduler = StandIn(Transition((start_x, start_y), frozenset({(start_x, start_y)})))
    p = PacemakerPlanner(scheduler=scheduler)(doc(), observed())
    assert p.actions == (start_x, start_y)
    assert p.edges == {(start_x, start_y)}
    assert p.params[start_y] == {"peer": "10.0.0.1"}
    assert scheduler.cibs and set(scheduler.cibs[0].resources.values()) == set(doc().resource_ids())


def test_while_pacemaker_probes_only_the_probes_are_kept() -> None:
    probe, start = act(K.PROBE, "a/x"), act(K.START, "a/x")
    scheduler = StandIn(Transition((probe, start), frozenset({(probe, start)})))
    p = PacemakerPlanner(scheduler=scheduler)(doc(), observed(x=R.UNKNOWN))
    assert p.actions == (probe,)
    assert p.edges == frozenset()


def test_assembly_actions_and_reasons_come_from_the_built_in_rules() -> None:
    obs = observed(y=R.RUNNING)
    running = ResourceStatus(
        R.RUNNING, "start", 0, Applied("ocf:heartbeat:Dummy", (("peer", "10.0.0.1"),)), True
    )
    obs = Observed(
        Goal.RUN,
        {**obs.assemblies, "a": AssemblyStatus(A.FAILED)},
        {**obs.resources, ResourceId("b", "y"): running},
    )
    stop_y = act(K.STOP, "b/y")
    p = PacemakerPlanner(scheduler=StandIn(Transition((stop_y,), frozenset())))(doc(), obs)
    assert set(p.actions) == {act(K.FENCE, "a"), act(K.CREATE, "a"), stop_y}
    assert (act(K.FENCE, "a"), act(K.CREATE, "a")) in p.edges
    assert p.params[stop_y] == {"peer": "10.0.0.1"}  # stopped as it was started
    assert p.blocked == {ResourceId("b", "y"): "waiting for the ipaddress of assembly a"}


# ---------------------------------------------------------------------------
# comparing


def test_comparing_plans_finds_missing_actions_and_orderings() -> None:
    stop_y, stop_x, start_x = act(K.STOP, "b/y"), act(K.STOP, "a/x"), act(K.START, "a/x")
    ours = Plan((stop_y, stop_x, start_x), frozenset({(stop_y, stop_x), (stop_x, start_x)}))
    theirs = Plan((stop_y, stop_x), frozenset())
    comparison = compare(ours, theirs)
    assert not comparison.agree
    assert comparison.only_first == (start_x,)
    assert comparison.order_only_first == ((stop_y, stop_x),)
    assert compare(ours, ours).agree
    assert compare(ours, theirs, ignore=[ResourceId("a", "x")]).agree


def test_orderings_are_transitive_and_can_leave_resources_out() -> None:
    x, y, z = act(K.STOP, "c/z"), act(K.STOP, "b/y"), act(K.STOP, "a/x")
    chain = Plan((x, y, z), frozenset({(x, y), (y, z)}))
    assert orderings(chain, [x, z]) == {(x, z)}
    assert orderings(chain, [x, z], without=[ResourceId("b", "y")]) == set()


def test_every_documented_difference_has_a_description() -> None:
    assert all(DIFFERENCES.values())
    assert {"probe-first", "assembly-lifecycle", "escalation"} <= set(DIFFERENCES)
