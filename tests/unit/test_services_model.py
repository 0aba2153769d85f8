"""Services (resources not bound to one assembly), colocations: model and documents."""

from __future__ import annotations

from typing import Any

import pytest

from foundation import document, model
from foundation.errors import InvalidInput
from foundation.model import INFINITY, Colocation, Location, ResourceId, service_id


def doc(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "shop",
        "assemblies": [
            {
                "name": "web",
                "resources": [
                    {"name": "app", "type": "Dummy", "parameters": {"db": {"ref": "db:ipaddress"}}}
                ],
            },
            {"name": "a1"},
            {"name": "a2"},
        ],
        "services": [
            {
                "name": "db",
                "type": "Dummy",
                "parameters": {"state": "/run/db.state"},
                "locations": [{"assembly": "a1", "score": 100}, {"assembly": "a2", "score": 50}],
                "stickiness": 60,
                "migration_threshold": 3,
                "failure_timeout": "2m",
            },
            {
                "name": "cache",
                "type": "Dummy",
                "locations": [{"assembly": "a1"}, {"assembly": "a2"}],
            },
        ],
        "colocations": [{"service": "cache", "with": "db", "score": "-INFINITY"}],
        "constraints": [{"first": "db", "then": "web/app"}],
    }
    return base | extra


def problems_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(InvalidInput) as caught:
        model.parse(data)
    return [f"{p['path']}: {p['message']}" for p in caught.value.details]


def test_a_service_has_candidates_scores_stickiness_and_failure_policy() -> None:
    dep = model.parse(doc())
    db = dep.service("db")
    assert db is not None
    assert db.locations == (Location("a1", 100), Location("a2", 50))
    assert (db.stickiness, db.migration_threshold, db.failure_timeout) == (60, 3, 120.0)
    cache = dep.service("cache")
    assert cache is not None and cache.migration_threshold == 0 and cache.stickiness == 0
    assert dep.colocations == (Colocation("cache", "db", -INFINITY),)
    assert dep.constraints[0].first == service_id("db")
    assert str(dep.constraints[0].first) == "db"


def test_a_service_is_a_resource_on_each_of_its_candidates_only() -> None:
    dep = model.parse(doc())
    db = dep.service("db")
    assert db is not None
    assert dep.resource(ResourceId("a1", "db")) is db.resource
    assert dep.resource(service_id("db")) is db.resource
    assert dep.resource(ResourceId("web", "db")) is None
    assert list(dep.service_placements()) == [
        ResourceId("a1", "db"),
        ResourceId("a2", "db"),
        ResourceId("a1", "cache"),
        ResourceId("a2", "cache"),
    ]
    assert ResourceId("a1", "db") not in set(dep.resource_ids())  # pinned ones only


@pytest.mark.parametrize("fmt", document.FORMATS)
def test_services_survive_every_spelling(fmt: str) -> None:
    dep = model.parse(doc())
    text = document.dump_document(dep.to_dict(), fmt)
    assert model.parse(document.load_document(text, fmt)) == dep


def test_a_document_without_services_is_spelled_as_before() -> None:
    data = doc(services=[], colocations=[], constraints=[])
    data["assemblies"][0]["resources"][0]["parameters"] = {}
    assert "services" not in model.parse(data).to_dict()


@pytest.mark.parametrize(
    ("value", "score"),
    [(5, 5), ("-7", -7), ("INFINITY", INFINITY), ("+inf", INFINITY), ("-INFINITY", -INFINITY)],
)
def test_scores_are_pacemaker_scores(value: object, score: int) -> None:
    assert model.parse_score(value) == score


def test_scores_are_clamped_to_infinity() -> None:
    assert model.parse_score(10**9) == INFINITY
    assert model.score_text(-(10**9)) == "-INFINITY"


def test_every_service_problem_is_reported_with_its_place() -> None:
    data = doc(
        services=[
            {"name": "db", "type": "Dummy", "locations": [{"assembly": "nowhere", "score": "x"}]},
            {"name": "a1", "type": "Dummy", "locations": [{"assembly": "a1"}, {"assembly": "a1"}]},
            {"name": "lost", "type": "Dummy"},
        ],
        colocations=[{"service": "db", "with": "ghost"}, {"service": "db", "with": "db"}],
        constraints=[{"first": "nosuch", "then": "web/app"}],
    )
    problems = problems_of(data)
    assert (
        "services[0].locations[0].score: not a score: 'x' (a whole number, INFINITY or -INFINITY)"
        in problems
    )
    assert "services[0].locations[0].assembly: no assembly 'nowhere' in the deployable" in problems
    assert "services[1].name: 'a1' is also an assembly's name" in problems
    assert "services[1].locations: duplicate assembly: 'a1'" in problems
    assert "services[2].locations: required: the assemblies it may run on" in problems
    assert "colocations[0].with: no service 'ghost' in the deployable" in problems
    assert "colocations[1]: a service cannot be colocated with itself" in problems
    assert "constraints[0].first: no such service in the deployable: nosuch" in problems


def test_a_constraint_naming_a_resource_without_its_assembly_says_how_to_name_it() -> None:
    problems = problems_of(doc(constraints=[{"first": "db", "then": "app"}]))
    assert (
        "constraints[0].then: no such service in the deployable: app"
        " (a resource is named with its assembly: web/app)" in problems
    )
    assert not any(p.startswith("constraints[0].first") for p in problems)


def test_a_service_may_not_shadow_a_resource_of_its_candidate() -> None:
    data = doc()
    data["assemblies"][1]["resources"] = [{"name": "db", "type": "Dummy"}]
    assert "services[0].locations[0].assembly: assembly 'a1' has a resource 'db'" in problems_of(
        data
    )


def test_a_reference_must_name_an_assembly_or_a_service() -> None:
    data = doc()
    data["services"][1]["parameters"] = {"peer": {"ref": "ghost:hostname"}}
    assert (
        "services[1].parameters.peer: refers to assembly 'ghost', which is not in the deployable"
        in problems_of(data)
    )


def test_colocation_cycles_are_accepted_as_pacemaker_accepts_them() -> None:
    data = doc(colocations=[{"service": "cache", "with": "db"}, {"service": "db", "with": "cache"}])
    parsed = model.parse(data)
    assert [(c.service, c.with_) for c in parsed.colocations] == [("cache", "db"), ("db", "cache")]
