"""Placement of services: scores, stickiness, failures, colocation, failover plans."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from dpe import simulate
from dpe.pacemaker import Transition, combine
from dpe.placement import Decision, add_scores, place
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
from dpe.policy import plan
from dpe.states import AssemblyState, ResourceState
from foundation.model import Deployable, ResourceId, parse

A = AssemblyState
R = ResourceState
K = ActionKind
INF = 1_000_000
ASM = ("a1", "a2", "a3")


def document(
    services: list[dict[str, Any]],
    *,
    assemblies: tuple[str, ...] = ("a1", "a2", "a3"),
    pinned: Mapping[str, list[dict[str, Any]]] | None = None,
    colocations: list[dict[str, Any]] | None = None,
    constraints: list[tuple[str, str]] = (),  # type: ignore[assignment]
) -> Deployable:
    return parse(
        {
            "name": "dep",
            "assemblies": [{"name": a, "resources": (pinned or {}).get(a, [])} for a in assemblies],
            "services": [{"type": "Dummy"} | s for s in services],
            "colocations": colocations or [],
            "constraints": [{"first": f, "then": t} for f, t in constraints],
        }
    )


def svc(name: str, *locations: tuple[str, int], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "locations": [{"assembly": a, "score": s} for a, s in locations],
    } | extra


def observed(
    doc: Deployable,
    *,
    down: Mapping[str, AssemblyState] | None = None,
    running: Mapping[str, str] | None = None,  # service -> assembly it runs on
    failed: Mapping[str, str] | None = None,  # service -> assembly where its monitor failed
    failures: Mapping[str, list[float]] | None = None,  # "a1/db" -> times
    moves: Mapping[str, str] | None = None,
    goal: Goal = Goal.RUN,
    now: float = 1000.0,
) -> Observed:
    """Every assembly RUNNING unless ``down``; every service stopped everywhere but
    where ``running``; every pinned resource running."""
    states = {a.name: A.RUNNING for a in doc.assemblies} | dict(down or {})
    assemblies = {
        name: AssemblyStatus(state, f"10.0.0.{i + 1}", name)
        for i, (name, state) in enumerate(states.items())
    }
    resources: dict[ResourceId, ResourceStatus] = {}
    for rid in doc.resource_ids():
        definition = doc.resource(rid)
        assert definition is not None
        resources[rid] = ResourceStatus(R.RUNNING, "start", 0, Applied.of(definition, {}), True)
    for rid in doc.service_placements():
        definition = doc.resource(rid)
        assert definition is not None
        if (running or {}).get(rid.resource) == rid.assembly:
            applied = Applied.of(definition, {})
            resources[rid] = ResourceStatus(R.RUNNING, "start", 0, applied, True)
        elif (failed or {}).get(rid.resource) == rid.assembly:
            resources[rid] = ResourceStatus(R.FAILED, "monitor", 7, Applied.of(definition, {}))
        else:
            resources[rid] = ResourceStatus(R.STOPPED, "probe", 7)
    service_failures = {
        ResourceId(*key.split("/")): tuple(times) for key, times in (failures or {}).items()
    }
    return Observed(
        goal,
        assemblies,
        resources,
        now=now,
        service_failures=service_failures,
        move_requests=dict(moves or {}),
    )


def kinds(p: Plan, kind: ActionKind) -> set[str]:
    return {
        f"{a.assembly}/{a.resource}" if a.resource else a.assembly
        for a in p.actions
        if a.kind is kind
    }


def action(kind: ActionKind, assembly: str, resource: str | None = None) -> Action:
    return Action(kind, assembly, resource)


def before(p: Plan, first: Action, then: Action) -> bool:
    """``first`` comes before ``then`` through the plan's edges."""
    preds = p.predecessors()
    seen, todo = set(), [then]
    while todo:
        for pred in preds.get(todo.pop(), set()):
            if pred == first:
                return True
            if pred not in seen:
                seen.add(pred)
                todo.append(pred)
    return False


def target(decisions: Mapping[str, Decision], name: str) -> str | None:
    return decisions[name].target


# -- scores and stickiness ------------------------------------------------------


def test_a_service_goes_to_its_best_scored_running_candidate() -> None:
    doc = document([svc("db", ("a1", 10), ("a2", 50))])
    assert target(place(doc, observed(doc)), "db") == "a2"
    p = plan(doc, observed(doc))
    assert kinds(p, K.START) == {"a2/db"}
    assert [str(m) for m in p.moves] == [
        "move db: nowhere -> a2 (best allowed assembly (score 50 on a2))"
    ]


# -- ties, as Pacemaker breaks them (each checked with crm_simulate in
# tests/integration/test_planner_differential_services.py) -------------------------


def test_a_running_service_stays_where_it_runs_when_scores_tie() -> None:
    """Issue 14, defect 1: equal scores, stickiness 0, running on the second listed."""
    doc = document([svc("db", ("a1", 50), ("a2", 50))], assemblies=("a1", "a2"))
    obs = observed(doc, running={"db": "a2"})
    decision = place(doc, obs)["db"]
    assert (decision.current, decision.target) == ("a2", "a2")
    assert decision.tie == "tied at 50 with a1: it already runs on a2"
    assert plan(doc, obs).empty


def test_tied_services_spread_over_the_assemblies_with_fewer_resources() -> None:
    """Issue 14, defect 2: two services with equal scores on two assemblies."""
    doc = document(
        [svc("s0", ("a1", 10), ("a2", 10)), svc("s1", ("a1", 10), ("a2", 10))],
        assemblies=("a1", "a2"),
    )
    decisions = place(doc, observed(doc))
    assert (target(decisions, "s0"), target(decisions, "s1")) == ("a1", "a2")
    assert decisions["s1"].tie == "tied at 10 with a1: fewer resources placed on a2 (0 against 1)"
    assert kinds(plan(doc, observed(doc)), K.START) == {"a1/s0", "a2/s1"}


def test_an_unplaced_tie_goes_to_the_lower_name_not_the_first_listed() -> None:
    doc = document([svc("db", ("a2", 5), ("a1", 5))], assemblies=("a2", "a1"))
    decision = place(doc, observed(doc))["db"]
    assert decision.target == "a1"
    assert decision.tie == "tied at 5 with a2: a1 comes first by name"


def test_pinned_resources_count_as_placed_and_at_zero_outweigh_where_it_runs() -> None:
    """Pacemaker prefers where a tied service runs only above 0; at 0 the assembly
    with fewer resources wins first, pinned resources included."""
    doc = document(
        [svc("db", ("a1", 0), ("a2", 0))],
        assemblies=("a1", "a2"),
        pinned={"a2": [{"name": "app", "type": "Dummy"}]},
    )
    decision = place(doc, observed(doc, running={"db": "a2"}))["db"]
    assert decision.target == "a1"
    assert decision.tie == "tied at 0 with a2: fewer resources placed on a1 (0 against 1)"
    above = document(
        [svc("db", ("a1", 1), ("a2", 1))],
        assemblies=("a1", "a2"),
        pinned={"a2": [{"name": "app", "type": "Dummy"}]},
    )
    assert place(above, observed(above, running={"db": "a2"}))["db"].target == "a2"


def test_a_running_service_stays_when_stickiness_outweighs_the_preference() -> None:
    doc = document([svc("db", ("a1", 100), ("a2", 50), stickiness=60)])
    decision = place(doc, observed(doc, running={"db": "a2"}))["db"]
    assert (decision.current, decision.target) == ("a2", "a2")
    assert plan(doc, observed(doc, running={"db": "a2"})).empty


def test_a_running_service_moves_back_when_the_preference_outweighs_stickiness() -> None:
    doc = document([svc("db", ("a1", 100), ("a2", 50), stickiness=40)])
    obs = observed(doc, running={"db": "a2"})
    p = plan(doc, obs)
    stop, start = action(K.STOP, "a2", "db"), action(K.START, "a1", "db")
    assert stop in p.actions and start in p.actions
    assert before(p, stop, start)  # never two copies
    (move,) = p.moves
    assert (move.source, move.target) == ("a2", "a1")
    assert "score 100 on a1 against 90 on a2" in move.reason


def test_a_negative_score_keeps_it_off_as_in_pacemaker() -> None:
    doc = document([svc("db", ("a1", -INF), ("a2", -10), ("a3", 0))])
    decision = place(doc, observed(doc))["db"]
    assert decision.target == "a3"
    assert decision.banned["a1"] == "score -INFINITY on a1"
    assert decision.banned["a2"] == "score -10 on a2"
    sticky = document([svc("db", ("a1", -10), ("a2", -20), stickiness=15)])
    assert place(sticky, observed(sticky, running={"db": "a1"}))["db"].target == "a1"  # 5
    assert place(sticky, observed(sticky, running={"db": "a2"}))["db"].target is None


def test_score_addition_is_pacemakers() -> None:
    assert add_scores(INF, -INF) == -INF
    assert add_scores(INF, 5) == INF
    assert add_scores(INF, -340) == INF
    assert add_scores(700_000, 700_000) == INF
    assert add_scores(3, -5) == -2


# -- failover -------------------------------------------------------------------


def test_a_failed_assembly_is_fenced_and_its_service_started_elsewhere_after_the_fence() -> None:
    doc = document(
        [svc("db", ("a1", 100), ("a2", 50))],
        pinned={"a3": [{"name": "app", "type": "Dummy"}]},
        constraints=[("db", "a3/app")],
    )
    obs = observed(doc, running={"db": "a1"}, down={"a1": A.FAILED})
    p = plan(doc, obs)
    fence, start = action(K.FENCE, "a1"), action(K.START, "a2", "db")
    assert before(p, fence, start)
    assert before(p, fence, action(K.CREATE, "a1"))
    assert not kinds(p, K.STOP) - {"a3/app"}  # nothing stopped on the failed assembly
    # what is ordered after the service restarts after it, on its new assembly
    assert before(p, start, action(K.START, "a3", "app"))
    (move,) = p.moves
    assert (move.source, move.target) == ("a1", "a2")
    assert move.reason.startswith("assembly a1 is failed")


def test_while_the_failed_assembly_is_recreated_the_service_runs_elsewhere() -> None:
    doc = document([svc("db", ("a1", 100), ("a2", 50))])
    obs = observed(doc, down={"a1": A.CREATING})  # fenced: its copy was forgotten
    assert kinds(plan(doc, obs), K.START) == {"a2/db"}


def test_a_service_that_may_still_run_where_nothing_is_known_yet_starts_nowhere_new() -> None:
    doc = document([svc("db", ("a1", 100), ("a2", 50))])
    obs = observed(doc, down={"a1": A.CONNECTING})
    recorded = ResourceStatus(R.UNKNOWN, "start", 0, Applied("ocf:heartbeat:Dummy", ()))
    obs = Observed(
        obs.goal, obs.assemblies, {**obs.resources, ResourceId("a1", "db"): recorded}, now=obs.now
    )
    p = plan(doc, obs)
    assert not kinds(p, K.START)
    assert "it may still run on a1" in p.blocked[ResourceId("", "db")]


def test_nothing_left_to_run_it_blocks_what_follows_it() -> None:
    doc = document(
        [svc("db", ("a1", 0), ("a2", 0))],
        pinned={"a3": [{"name": "app", "type": "Dummy"}]},
        constraints=[("db", "a3/app")],
    )
    obs = observed(doc, down={"a1": A.FAILED, "a2": A.CREATING})
    p = plan(doc, obs)
    assert "a3/app" in kinds(p, K.STOP)
    assert ResourceId("a3", "app") in p.blocked
    assert "waiting for service db" in p.blocked[ResourceId("a3", "app")]
    assert p.blocked[ResourceId("", "db")].startswith("no assembly may run it")


# -- failures -------------------------------------------------------------------


def test_failures_up_to_the_threshold_restart_in_place() -> None:
    doc = document([svc("db", ("a1", 100), ("a2", 50), migration_threshold=3)])
    obs = observed(doc, failed={"db": "a1"}, failures={"a1/db": [990.0, 995.0]})
    p = plan(doc, obs)
    assert before(p, action(K.STOP, "a1", "db"), action(K.START, "a1", "db"))


def test_a_service_that_failed_too_often_moves_away_until_the_failures_expire() -> None:
    doc = document([svc("db", ("a1", 100), ("a2", 50), migration_threshold=2, failure_timeout=60)])
    obs = observed(doc, failed={"db": "a1"}, failures={"a1/db": [980.0, 999.0]})
    p = plan(doc, obs)
    assert before(p, action(K.STOP, "a1", "db"), action(K.START, "a2", "db"))
    # the count expires as a whole, 60 s after the last failure, in whole seconds
    assert p.wake_at == 1060.0
    (move,) = p.moves
    assert move.reason.startswith("2 failures on a1 (migration threshold 2)")
    failures = {"a1/db": [980.0, 999.0]}
    still = observed(doc, running={"db": "a2"}, failures=failures, now=1059.9)
    assert target(place(doc, still), "db") == "a2"  # at 999 + 60 it still counts
    later = observed(doc, running={"db": "a2"}, failures=failures, now=1060.0)
    assert target(place(doc, later), "db") == "a1"  # expired: the scores decide again


def test_a_fail_count_starts_again_only_after_it_expired() -> None:
    """Failures each within failure_timeout of the one before all count (Pacemaker
    clears a fail count only once its last failure is that old)."""
    doc = document([svc("db", ("a1", 100), ("a2", 50), migration_threshold=3, failure_timeout=50)])
    chained = observed(doc, failures={"a1/db": [900.0, 940.0, 990.0]})
    assert target(place(doc, chained), "db") == "a2"
    restarted = observed(doc, failures={"a1/db": [900.0, 960.0, 990.0]})  # 900 expired at 951
    assert target(place(doc, restarted), "db") == "a1"


def test_a_service_whose_stop_failed_never_starts_elsewhere_before_the_fence() -> None:
    """Whatever the scores say (a2 at INFINITY), a copy whose stop failed, softly or
    with a hard error, may still run on a1: the service stays there until a1 is
    fenced, and starts on a2 only after the fence."""
    doc = document([svc("db", ("a1", 0), ("a2", INF))], assemblies=("a1", "a2"))
    ran = Applied("ocf:heartbeat:Dummy", ())
    for status in (
        ResourceStatus(R.FAILED, "stop", 1, ran),
        ResourceStatus(R.UNRECOVERABLE, "stop", 5, ran),
    ):
        obs = observed(doc)
        obs = Observed(
            obs.goal, obs.assemblies, {**obs.resources, ResourceId("a1", "db"): status}, now=obs.now
        )
        decision = place(doc, obs)["db"]
        assert (decision.target, decision.reason) == (
            "a1",
            "its stop failed on a1: it stays until it is fenced",
        )
        assert "a2/db" not in kinds(plan(doc, obs), K.START)
        lost = Observed(
            obs.goal, {**obs.assemblies, "a1": AssemblyStatus(A.FAILED)}, obs.resources, now=obs.now
        )
        p = plan(doc, lost)
        assert before(p, action(K.FENCE, "a1"), action(K.START, "a2", "db"))


def test_nothing_kept_apart_from_a_service_starts_where_its_stop_failed() -> None:
    """replica must never run with db; its stop failed on a2 (softly or not
    installed), so it may still run there: db, whichever side of the colocation
    it is on, starts on a1 (its lower score) while a2 is not fenced."""
    ran = Applied("ocf:heartbeat:Dummy", ())
    for leader, follower in (("db", "replica"), ("replica", "db")):
        doc = document(
            [svc("db", ("a1", 10), ("a2", 50)), svc("replica", ("a1", 0), ("a2", 20))],
            assemblies=("a1", "a2"),
            colocations=[{"service": follower, "with": leader, "score": "-INFINITY"}],
        )
        for status in (
            ResourceStatus(R.FAILED, "stop", 1, ran),
            ResourceStatus(R.UNRECOVERABLE, "stop", 5, ran),
        ):
            obs = observed(doc)
            resources = {**obs.resources, ResourceId("a2", "replica"): status}
            obs = Observed(obs.goal, obs.assemblies, resources, now=obs.now)
            decision = place(doc, obs)["db"]
            assert decision.target == "a1", decision.explain()
            why = "replica must not run with it and may still run on a2 (its stop failed)"
            assert decision.banned["a2"] == why
            assert "a2/db" not in kinds(plan(doc, obs), K.START)
            fenced = {**obs.assemblies, "a2": AssemblyStatus(A.FAILED)}
            lost = Observed(obs.goal, fenced, obs.resources, now=obs.now)
            assert place(doc, lost)["db"].banned["a2"] == "assembly a2 is failed"


def test_hard_errors_ban_an_assembly_and_a_wrong_configuration_bans_them_all() -> None:
    """As Pacemaker: an agent missing where it was probed (OCF 5) keeps the service
    off that assembly; "not configured" (OCF 6) keeps it off every one."""
    doc = document([svc("db", ("a1", 100), ("a2", 50))], assemblies=("a1", "a2"))
    base = observed(doc)
    for status, expected in (
        (ResourceStatus(R.STOPPED, "probe", 5), {"a1": "a hard error on a1 (OCF 5)"}),
        (
            ResourceStatus(R.UNRECOVERABLE, "start", 6),
            {"a1": "a hard error on a1 (OCF 6)", "a2": "not configured on a1 (OCF 6)"},
        ),
    ):
        obs = replace(base, resources={**base.resources, ResourceId("a1", "db"): status})
        assert place(doc, obs)["db"].banned == expected


# -- colocation -----------------------------------------------------------------


def test_a_service_colocated_with_another_runs_where_it_runs() -> None:
    doc = document(
        [svc("db", ("a1", 10), ("a2", 50)), svc("cache", ("a1", 0), ("a2", 30))],
        colocations=[{"service": "cache", "with": "db"}],
    )
    decisions = place(doc, observed(doc))
    assert (target(decisions, "db"), target(decisions, "cache")) == ("a2", "a2")
    obs = observed(doc, down={"a2": A.FAILED})
    assert (target(place(doc, obs), "db"), target(place(doc, obs), "cache")) == ("a1", "a1")


def test_the_colocated_service_s_preferences_count_for_its_leader_as_in_pacemaker() -> None:
    """At INFINITY the follower's scores are added to the leader's (taken away at
    -INFINITY): db goes where db and cache together score best."""
    doc = document(
        [svc("db", ("a1", 10), ("a2", 50)), svc("cache", ("a1", 100), ("a2", 0))],
        colocations=[{"service": "cache", "with": "db"}],
    )
    decisions = place(doc, observed(doc))
    assert (target(decisions, "db"), target(decisions, "cache")) == ("a1", "a1")


def test_an_anti_colocated_service_never_shares_an_assembly() -> None:
    doc = document(
        [svc("db", ("a1", 10), ("a2", 50)), svc("replica", ("a2", 20), ("a1", 0))],
        colocations=[{"service": "replica", "with": "db", "score": "-INFINITY"}],
    )
    assert target(place(doc, observed(doc)), "replica") == "a1"
    obs = observed(doc, down={"a1": A.FAILED}, running={"db": "a2", "replica": "a1"})
    decision = place(doc, obs)["replica"]
    assert decision.target is None
    assert decision.banned["a2"] == "must not run with db"
    # the replica's strong preference for a2 pushes db away from it, as in Pacemaker
    pushed = document(
        [svc("db", ("a1", 10), ("a2", 50)), svc("replica", ("a2", 100), ("a1", 0))],
        colocations=[{"service": "replica", "with": "db", "score": "-INFINITY"}],
    )
    decisions = place(pushed, observed(pushed))
    assert (target(decisions, "db"), target(decisions, "replica")) == ("a1", "a2")


def test_a_colocated_followers_failure_ban_keeps_the_group_off_that_assembly() -> None:
    """Issue 14, defect 3: cache must run with db and has failed too often on a1."""
    doc = document(
        [
            svc("db", ("a1", 100), ("a2", 50)),
            svc("cache", ("a1", 0), ("a2", 0), migration_threshold=1),
        ],
        assemblies=("a1", "a2"),
        colocations=[{"service": "cache", "with": "db"}],
    )
    decisions = place(doc, observed(doc, failures={"a1/cache": [990.0]}))
    assert (target(decisions, "db"), target(decisions, "cache")) == ("a2", "a2")
    terms = [t.why for t in decisions["db"].candidates["a1"].terms]
    assert terms == [
        "location score",
        "from cache, colocated with db at INFINITY: it may not run there",
    ]
    assert decisions["db"].banned["a1"].startswith("from cache")


def test_a_follower_whose_preference_leaves_no_assembly_is_left_out_alone() -> None:
    """Issue 14, defect 4: cache can only run on a1, web only on a2; with both, db
    could run nowhere.  Pacemaker merges cache's preference (first by id), then
    leaves web's out: db and cache run on a1, web alone stays stopped."""
    doc = document(
        [svc("db", ("a1", 50), ("a2", 60)), svc("cache", ("a1", 100)), svc("web", ("a2", 0))],
        assemblies=("a1", "a2"),
        colocations=[{"service": "cache", "with": "db"}, {"service": "web", "with": "db"}],
    )
    decisions = place(doc, observed(doc))
    assert {n: d.target for n, d in decisions.items()} == {"db": "a1", "cache": "a1", "web": None}
    assert decisions["db"].notes == (
        "the preference of web was left out: with it no assembly could run db",
    )
    assert decisions["web"].banned["a2"] == "must run with db, which runs on a1"


def test_a_colocation_cycle_of_three_services_is_placed_as_pacemaker_places_it() -> None:
    """x with y, y with z, z with x: assigning x assigns y first, which assigns z
    first, which does not wait for x (already being assigned); each takes its
    followers' scores, so all three go where together they score best."""
    doc = document(
        [
            svc("x", ("a1", 10), ("a2", 20)),
            svc("y", ("a1", 30), ("a2", 0)),
            svc("z", ("a1", 0), ("a2", 15)),
        ],
        assemblies=("a1", "a2"),
        colocations=[
            {"service": "x", "with": "y"},
            {"service": "y", "with": "z"},
            {"service": "z", "with": "x"},
        ],
    )
    decisions = place(doc, observed(doc))
    assert {n: d.target for n, d in decisions.items()} == {"x": "a2", "y": "a2", "z": "a2"}
    assert decisions["z"].scores == {"a1": 40, "a2": 50}  # as crm_simulate shows them
    assert decisions["y"].scores == {"a2": 70}
    assert decisions["x"].scores == {"a2": 160}


def test_a_finite_colocation_score_is_a_preference() -> None:
    doc = document(
        [svc("db", ("a1", 10), ("a2", 50)), svc("web", ("a1", 30), ("a2", 0))],
        colocations=[{"service": "web", "with": "db", "score": 40}],
    )
    assert target(place(doc, observed(doc)), "web") == "a2"


# -- requests, references, stopping ---------------------------------------------


def test_an_administrator_move_wins_until_it_is_done() -> None:
    doc = document([svc("db", ("a1", 100), ("a2", 50), stickiness=100)])
    obs = observed(doc, running={"db": "a1"}, moves={"db": "a2"})
    p = plan(doc, obs)
    assert before(p, action(K.STOP, "a1", "db"), action(K.START, "a2", "db"))
    assert p.moves[0].reason == "moved by the administrator"


def test_a_reference_to_a_service_follows_it() -> None:
    app = {"name": "app", "type": "Dummy", "parameters": {"db": {"ref": "db:ipaddress"}}}
    doc = document(
        [svc("db", ("a1", 100), ("a2", 50))], pinned={"a3": [app]}, constraints=[("db", "a3/app")]
    )
    obs = observed(doc, running={"db": "a2"})
    app_rid = ResourceId("a3", "app")
    obs = Observed(
        obs.goal,
        obs.assemblies,
        {
            **obs.resources,
            app_rid: ResourceStatus(
                R.RUNNING, "start", 0, Applied("ocf:heartbeat:Dummy", (("db", "10.0.0.2"),)), True
            ),
        },
        now=obs.now,
    )
    p = plan(doc, obs)  # db moves back to a1 (no stickiness): app follows its address
    start = action(K.START, "a3", "app")
    assert p.params[start] == {"db": "10.0.0.1"}
    assert before(p, action(K.START, "a1", "db"), start)
    assert before(p, action(K.STOP, "a3", "app"), action(K.STOP, "a2", "db"))


def test_stopping_stops_every_copy_in_order() -> None:
    doc = document(
        [svc("db", ("a1", 100), ("a2", 50))],
        pinned={"a3": [{"name": "app", "type": "Dummy"}]},
        constraints=[("db", "a3/app")],
    )
    p = plan(doc, observed(doc, running={"db": "a2"}, goal=Goal.STOP))
    assert before(p, action(K.STOP, "a3", "app"), action(K.STOP, "a2", "db"))
    assert not kinds(p, K.START)
    assert kinds(p, K.FENCE) == {"a1", "a2", "a3"}


# -- what-if simulation ---------------------------------------------------------


def test_simulating_an_assembly_failure_shows_where_its_services_move() -> None:
    app = {"name": "app", "type": "Dummy", "parameters": {"db": {"ref": "db:ipaddress"}}}
    doc = document(
        [svc("db", ("a1", 100), ("a2", 50), stickiness=60)],
        pinned={"a3": [app]},
        constraints=[("db", "a3/app")],
    )
    steady = simulate.steady_state(doc)
    assert simulate.what_if(doc, steady, []).describe() == [
        "db stays on a1: the best allowed (score 160 on a1)",
        "  a1: 160 = 100 location score + 60 stickiness (it runs here)",
        "  a2: 50 = 50 location score",
        "no actions",
    ]
    lines = simulate.what_if(doc, steady, ["a1"]).describe()
    assert lines[:4] == [
        "move db: a1 -> a2 (assembly a1 is failed (score 50 on a2))",
        "db moves from a1 to a2: assembly a1 is failed (score 50 on a2)",
        "  a1: 100 = 100 location score; not allowed: assembly a1 is failed",
        "  a2: 50 = 50 location score",
    ]
    assert "4. start a2/db (after fence a1)" in lines
    restart = simulate.what_if(doc, steady, ["a1/db"]).plan
    assert kinds(restart, K.START) == {"a1/db", "a3/app"}  # recovered in place


def test_the_recorded_runtime_gives_copies_fail_counts_and_requested_moves() -> None:
    doc = document([svc("db", ("a1", 100), ("a2", 50), migration_threshold=1)])
    docs = {
        "instance": {a: {"address": f"10.0.0.{i}", "hostname": a} for i, a in enumerate(ASM)},
        "assembly": {a: {"state": "running"} for a in ASM},
        "resource": {"a2/db": {"state": "running", "applied": {"agent": "x", "params": {}}}},
        "service": {"db": {"failures": {"a1": [900.0]}}},
        "move": {"db": {"to": "a1", "requested_at": 950.0}},
    }
    observed_state, _ = simulate.observed_from_runtime(doc, docs, now=1000.0)
    assert observed_state.resource(ResourceId("a2", "db")).state is R.RUNNING
    assert observed_state.service_failures == {ResourceId("a1", "db"): (900.0,)}
    assert observed_state.move_requests == {"db": "a1"}
    decision = place(doc, observed_state)["db"]
    assert decision.target == "a2"  # banned on a1 even though a move there was asked
    assert decision.banned["a1"].startswith("1 failure on a1 (migration threshold 1)")


def test_with_pacemaker_as_planner_a_moved_service_still_waits_for_the_fence() -> None:
    """Pacemaker takes a failed assembly for cleanly down and starts the service
    elsewhere at once; combined with our assembly actions, the start waits."""
    doc = document([svc("db", ("a1", 100), ("a2", 50))])
    obs = observed(doc, running={"db": "a1"}, down={"a1": A.FAILED})
    start = action(K.START, "a2", "db")
    theirs = Transition((start,), frozenset())
    combined = combine(plan(doc, obs), theirs, doc, obs)
    assert before(combined, action(K.FENCE, "a1"), start)
    assert [m.target for m in combined.moves] == ["a2"]
