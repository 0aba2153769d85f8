"""Placement against Pacemaker's scheduler: location scores, stickiness, colocation.

The CIB (``dpe.cib``) gives each service its location scores on its candidate
assemblies, its ``resource-stickiness`` and its colocations; ``crm_simulate``
decides where it runs.  Explicit cases first (the acceptance: stickiness above
the preference difference keeps a service where it runs when the preferred
assembly returns, below it the service moves back), then generated ones:
services on two or three assemblies with random scores and stickiness, with
or without a colocation between them and a pinned resource ordered after one,
running somewhere or nowhere, with assemblies failed or stopped.  Ties
between assemblies are left out (Pacemaker breaks them its own way).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from dpe.cib import build_cib
from dpe.pacemaker import available, compare, run_scheduler
from dpe.placement import place
from dpe.planner import Applied, AssemblyStatus, Goal, Observed, Plan, ResourceStatus
from dpe.states import AssemblyState, ResourceState
from foundation.model import Deployable, ResourceId, parse
from tests.integration.test_planner_differential import Case, our_answer, summary_mismatches

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not available(), reason="crm_simulate is not installed"),
]

A = AssemblyState
R = ResourceState
NOW = 1000.0
ASSEMBLIES = ("a", "b", "c")
CASES = int(os.environ.get("PCLOUD_DIFF_SERVICE_CASES", "150"))


def document(
    services: list[dict[str, Any]],
    colocations: list[dict[str, Any]] = (),  # type: ignore[assignment]
    pinned: bool = False,
) -> Deployable:
    assemblies: list[dict[str, Any]] = [{"name": a} for a in ASSEMBLIES]
    constraints = []
    if pinned:
        assemblies[2]["resources"] = [{"name": "app", "type": "Dummy"}]
        constraints = [{"first": services[0]["name"], "then": "c/app"}]
    return parse(
        {
            "name": "d",
            "assemblies": assemblies,
            "services": [{"type": "Dummy"} | s for s in services],
            "colocations": list(colocations),
            "constraints": constraints,
        }
    )


def service(name: str, scores: Mapping[str, object], stickiness: int = 0) -> dict[str, Any]:
    locations = [{"assembly": a, "score": s} for a, s in scores.items()]
    return {"name": name, "locations": locations, "stickiness": stickiness}


def case(
    doc: Deployable,
    running: Mapping[str, str] | None = None,
    assemblies: Mapping[str, AssemblyState] | None = None,
    failed: Mapping[str, str] | None = None,
) -> Case:
    """Every copy stopped (probed) but where ``running`` (or ``failed``: its monitor)."""
    states = {a: (assemblies or {}).get(a, A.RUNNING) for a in ASSEMBLIES}
    statuses = {a: AssemblyStatus(s, f"10.0.0.{i}", a) for i, (a, s) in enumerate(states.items())}
    resources: dict[ResourceId, ResourceStatus] = {}
    for rid in [*doc.resource_ids(), *doc.service_placements()]:
        definition = doc.resource(rid)
        assert definition is not None
        applied = Applied.of(definition, dict(definition.parameters))  # type: ignore[arg-type]
        if rid.assembly == (running or {}).get(rid.resource) or not doc.service(rid.resource):
            resources[rid] = ResourceStatus(R.RUNNING, "start", 0, applied, monitoring=True)
        elif rid.assembly == (failed or {}).get(rid.resource):
            resources[rid] = ResourceStatus(R.FAILED, "monitor", 7, applied)
        else:
            resources[rid] = ResourceStatus(R.STOPPED, "probe", 7)
    return Case(doc, Observed(Goal.RUN, statuses, resources, now=NOW))


def pacemaker_answer(c: Case) -> Plan:
    """Pacemaker's plan; its summary must match the graph for the pinned resources
    (a service's summary line -- "move db" -- names no assembly of ours)."""
    transition = run_scheduler(build_cib(c.document, c.observed), execute=True)
    pinned = tuple(
        line for line in transition.summary if line.resource and not line.resource.is_service
    )
    assert not summary_mismatches(replace(transition, summary=pinned))
    return transition.plan()


def answers(c: Case) -> tuple[set[str], set[str]]:
    ours, theirs = our_answer(c), pacemaker_answer(c)
    return (
        {str(a) for a in ours.actions if a.resource},
        {str(a) for a in theirs.actions if a.resource},
    )


def agree(c: Case) -> None:
    ours, theirs = our_answer(c), pacemaker_answer(c)
    comparison = compare(ours, theirs)
    assert comparison.agree, "\n".join([describe(c), *comparison.describe()])


def describe(c: Case) -> str:
    lines = [str(c)]
    for entry in c.document.services:
        places = ", ".join(f"{loc.assembly}:{loc.score}" for loc in entry.locations)
        copies = {
            a: str(c.observed.resource(ResourceId(a, entry.name)).state) for a in entry.assemblies
        }
        lines.append(f"  service {entry.name} on {places} stickiness {entry.stickiness} {copies}")
    lines += [f"  colocation {x.service} with {x.with_} {x.score}" for x in c.document.colocations]
    return "\n".join(lines)


MOVE_BACK = {"stop b/db", "start a/db", "monitor a/db every 10 s"}


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
    doc = document([service("db", {"a": 100, "b": 50, "c": 70})], pinned=True)
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


# -- generated cases ----------------------------------------------------------------

scores = st.one_of(
    st.integers(-20, 60).map(lambda n: n * 10),
    st.sampled_from(["INFINITY", "-INFINITY"]),
)


@st.composite
def services_cases(draw: st.DrawFn) -> Case:
    count = draw(st.integers(1, 2))
    docs = []
    for i in range(count):
        candidates = draw(
            st.lists(st.sampled_from(ASSEMBLIES), min_size=2, max_size=3, unique=True)
        )
        placed = {a: draw(scores) for a in candidates}
        stickiness = draw(st.integers(0, 30)) * 10 + 5  # odd fives: never a tie with a score
        docs.append(service(f"s{i}", placed, stickiness))
    colocations = []
    if count == 2 and draw(st.booleans()):
        score = draw(st.sampled_from(["INFINITY", "-INFINITY", 40, -40, 300, 500000]))
        colocations.append({"service": "s1", "with": "s0", "score": score})
    doc = document(docs, colocations, pinned=draw(st.booleans()))
    states = {a: draw(st.sampled_from([A.RUNNING] * 4 + [A.FAILED, A.STOPPED])) for a in ASSEMBLIES}
    running, failed = {}, {}
    for entry in doc.services:
        where = draw(st.sampled_from([None, *entry.assemblies]))
        if where is None:
            continue
        if states[where] is A.STOPPED:
            continue  # nothing runs on an assembly without an instance
        if draw(st.integers(0, 4)) == 0 and states[where] is A.RUNNING:
            failed[entry.name] = where
        else:
            running[entry.name] = where
    if (
        len(set(running.values())) < len(running)
        and colocations
        and colocations[0]["score"] == "-INFINITY"
    ):
        assume(False)  # an anti-colocated pair already together: not a state we reach
    c = case(doc, running, states, failed)
    for decision in place(doc, c.observed).values():
        values = list(decision.scores.values())
        assume(len(set(values)) == len(values))  # no ties
    return c


@settings(
    max_examples=CASES,
    deadline=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(services_cases())
def test_placement_agrees_with_pacemaker_on_generated_cases(c: Case) -> None:
    agree(c)
