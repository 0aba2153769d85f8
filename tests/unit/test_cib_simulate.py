"""What-if simulation: failures applied as the engine records them, then planned."""

from __future__ import annotations

import pytest

from dpe.planner import ActionKind, AssemblyStatus, Goal, Observed, Plan
from dpe.simulate import (
    Failure,
    Windows,
    observed_from_runtime,
    parse_failures,
    plan_to_dot,
    simulate,
    steady_state,
    what_if,
)
from dpe.states import AssemblyState, ResourceState
from foundation.errors import InvalidInput
from foundation.model import Deployable, ResourceId, parse

K = ActionKind
NOW = 1000.0


def doc(resource_escalation: int = 0, assembly_escalation: int = 0) -> Deployable:
    def escalation(n: int) -> dict[str, object]:
        return {"failures": n, "period": 60} if n else {}

    return parse(
        {
            "name": "shop",
            "escalation": {"failures": 2, "period": 60},
            "assemblies": [
                {
                    "name": "db",
                    "escalation": escalation(assembly_escalation),
                    "resources": [
                        {
                            "name": "pg",
                            "type": "Dummy",
                            "escalation": escalation(resource_escalation),
                        }
                    ],
                },
                {
                    "name": "web",
                    "resources": [
                        {
                            "name": "app",
                            "type": "Dummy",
                            "parameters": {"db": {"ref": "db:ipaddress"}},
                        }
                    ],
                },
            ],
            "constraints": [{"first": "db/pg", "then": "web/app"}],
        }
    )


def kinds(p: Plan, kind: ActionKind) -> list[str]:
    return [
        f"{a.assembly}/{a.resource}" if a.resource else a.assembly
        for a in p.actions
        if a.kind is kind
    ]


def test_a_resource_failure_restarts_it_and_what_follows_it() -> None:
    d = doc()
    p = simulate(d, steady_state(d, NOW), ["db/pg"])
    assert kinds(p, K.STOP) == ["web/app", "db/pg"]
    assert kinds(p, K.START) == ["db/pg", "web/app"]


def test_an_assembly_failure_fences_and_recreates_it() -> None:
    d = doc()
    result = what_if(d, steady_state(d, NOW), ["db"])
    assert result.observed.assembly("db").state is AssemblyState.FAILED
    assert kinds(result.plan, K.FENCE) == kinds(result.plan, K.CREATE) == ["db"]
    assert kinds(result.plan, K.STOP) == ["web/app"]  # it cannot run without db/pg


def test_a_resource_that_keeps_failing_escalates_to_its_assembly() -> None:
    d = doc(resource_escalation=2)
    windows = Windows(resources={ResourceId("db", "pg"): [NOW - 10]})
    result = what_if(d, steady_state(d, NOW), ["db/pg"], windows=windows)
    assert result.notes == ("db/pg: 2 failures in 60 s: escalating to assembly",)
    assert kinds(result.plan, K.FENCE) == ["db"]
    without_history = what_if(d, steady_state(d, NOW), ["db/pg"])
    assert kinds(without_history.plan, K.FENCE) == []


def test_an_assembly_that_keeps_failing_restarts_the_deployable_then_gives_up() -> None:
    d = doc(assembly_escalation=1)
    result = what_if(d, steady_state(d, NOW), ["db"])
    assert result.notes == (
        "db: 1 failure in 60 s: escalating to deployable",
        "shop: restarting every assembly: first everything stops",
    )
    assert result.observed.goal is Goal.STOP
    assert sorted(kinds(result.plan, K.FENCE)) == ["db", "web"]
    windows = Windows(deployable=[NOW - 5])
    given_up = what_if(d, steady_state(d, NOW), ["db"], windows=windows)
    assert given_up.given_up and given_up.plan.empty
    assert given_up.describe()[-1] == "no actions: the deployable is failed until started again"


def test_failing_what_is_already_down_changes_nothing_and_says_so() -> None:
    d = doc()
    obs = steady_state(d, NOW)
    obs = Observed(
        Goal.RUN,
        {**obs.assemblies, "web": AssemblyStatus(AssemblyState.STOPPED)},
        obs.resources,
        now=NOW,
    )
    result = what_if(d, obs, ["web/app", "web"])
    assert result.notes == (
        "web/app: its assembly is not running: nothing to fail",
        "web: stopped: nothing to fail",
    )


def test_unknown_parts_are_refused_all_at_once() -> None:
    with pytest.raises(InvalidInput) as error:
        parse_failures(["nope", "db/nope", "a/b/c", "db/pg", "bad name"], doc())
    text = str(error.value)
    assert "no assembly 'nope'" in text
    assert "no resource 'nope' in assembly 'db'" in text
    assert "must be ASSEMBLY or ASSEMBLY/RESOURCE" in text
    assert "not a valid name" in text
    assert parse_failures(["db/pg", "web"], doc()) == (Failure("db", "pg"), Failure("web"))


def test_the_plan_reads_as_a_numbered_list() -> None:
    d = doc()
    lines = what_if(d, steady_state(d, NOW), ["web/app"]).describe()
    assert lines[0] == "1. stop web/app"
    assert lines[1].startswith("2. start web/app (after stop web/app)")


def test_dot_has_a_node_per_action_and_an_arrow_per_ordering() -> None:
    d = doc()
    p = simulate(d, steady_state(d, NOW), ["db/pg"])
    dot = plan_to_dot(p)
    assert dot.startswith('digraph "transition" {')
    assert dot.count("[label=") == len(p.actions)
    assert dot.count(" -> ") == len(p.edges)
    assert '"stop web/app"' in dot


def test_the_state_comes_from_what_the_engine_recorded() -> None:
    d = doc()
    docs = {
        "instance": {"db": {"address": "10.0.0.7", "hostname": "db1"}},
        "assembly": {"db": {"state": "running", "failures": [990.0]}, "web": {"state": "creating"}},
        "resource": {
            "db/pg": {
                "state": "running",
                "last_op": "start",
                "last_rc": 0,
                "failures": [995.0],
                "applied": {"agent": "ocf:heartbeat:Dummy", "params": {}},
            }
        },
        "deployable": {"": {"state": "recovering", "failures": []}},
    }
    obs, windows = observed_from_runtime(d, docs, NOW)
    assert obs.goal is Goal.RUN
    assert obs.assembly("db") == AssemblyStatus(AssemblyState.RUNNING, "10.0.0.7", "db1")
    assert obs.assembly("web").state is AssemblyState.CREATING
    pg = obs.resource(ResourceId("db", "pg"))
    assert pg.state is ResourceState.RUNNING and pg.monitoring and pg.applied is not None
    assert obs.resource(ResourceId("web", "app")).state is ResourceState.UNKNOWN
    assert windows.resources[ResourceId("db", "pg")] == (995.0,)
    assert windows.assemblies["db"] == (990.0,)
