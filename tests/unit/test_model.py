"""The deployable model: parsing, validation with paths, and the canonical form."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from foundation import model
from foundation.errors import InvalidInput


def sample() -> dict[str, Any]:
    return {
        "name": "shop",
        "infrastructure": "local",
        "escalation": {"failures": 2, "period": "10m"},
        "assemblies": [
            {
                "name": "web",
                "escalation": {"failures": 3, "period": 60},
                "resources": [
                    {
                        "name": "www",
                        "type": "Dummy",
                        "monitor_interval": "5s",
                        "parameters": {"db": {"ref": "db:ipaddress"}, "fake": 1},
                        "escalation": {"failures": "INFINITY", "period": "INFINITY"},
                    }
                ],
            },
            {"name": "db", "resources": [{"name": "pg", "class": "lsb", "type": "postgresql"}]},
        ],
        "constraints": [{"first": "db/pg", "then": "web/www"}],
    }


def problems_of(doc: object) -> list[dict[str, str]]:
    with pytest.raises(InvalidInput) as caught:
        model.parse(doc)
    details = caught.value.details
    assert isinstance(details, list)
    return details


def test_parse_builds_the_model() -> None:
    dep = model.parse(sample())
    web = dep.assembly("web")
    assert web is not None and web.escalation == model.Escalation(3, 60.0)
    www = web.resource("www")
    assert www is not None
    assert www.monitor_interval == 5.0
    assert www.parameters == {"db": model.Reference("db", "ipaddress"), "fake": "1"}
    assert not www.escalation.enabled
    assert dep.escalation == model.Escalation(2, 600.0)
    assert dep.constraints == (
        model.Constraint(model.ResourceId("db", "pg"), model.ResourceId("web", "www")),
    )
    assert len(web.uuid) == 32


def test_canonical_form_round_trips() -> None:
    dep = model.parse(sample())
    assert model.parse(dep.to_dict()) == dep
    assert model.parse(dep.to_dict()).to_dict() == dep.to_dict()


@pytest.mark.parametrize(
    ("written", "apart"),
    [
        ("ocf:heartbeat:Dummy", "class: ocf, provider: heartbeat, type: Dummy"),
        ("lsb:ssh", "class: lsb, type: ssh"),
        ("systemd:sshd", "class: systemd, type: sshd"),
    ],
)
def test_a_type_written_as_the_whole_agent_name_is_refused_saying_how_to_write_it(
    written: str, apart: str
) -> None:
    doc = sample()
    doc["assemblies"][0]["resources"][0]["type"] = written
    paths = {p["path"]: p["message"] for p in problems_of(doc)}
    message = paths["assemblies[0].resources[0].type"]
    assert message == f"{written!r} is an agent's whole name; a document writes it apart: {apart}"


def test_a_type_with_a_colon_that_is_no_agent_name_is_an_invalid_name() -> None:
    doc = sample()
    doc["assemblies"][0]["resources"][0]["type"] = "ocf:Dummy"
    paths = {p["path"]: p["message"] for p in problems_of(doc)}
    assert paths["assemblies[0].resources[0].type"].startswith("not a valid name: 'ocf:Dummy'")


def test_every_problem_is_reported_with_its_path() -> None:
    doc = sample()
    doc["assemblies"][0]["resources"][0]["monitor_interval"] = "10x"
    doc["assemblies"][1]["name"] = "bad name"
    doc["escalation"]["failures"] = "many"
    paths = {p["path"]: p["message"] for p in problems_of(doc)}
    assert paths["assemblies[0].resources[0].monitor_interval"] == "not a duration: '10x'"
    assert "not a valid name" in paths["assemblies[1].name"]
    assert "not a number of failures" in paths["escalation.failures"]


@pytest.mark.parametrize(
    "name", ["a/b", "has space", "..", ".", "", "-lead", "x" * 64, "semi;colon"]
)
def test_bad_names_are_rejected(name: str) -> None:
    doc = sample()
    doc["name"] = name
    assert any(p["path"] == "name" for p in problems_of(doc))


def test_cycle_in_constraints_is_rejected() -> None:
    doc = sample()
    doc["constraints"].append({"first": "web/www", "then": "db/pg"})
    messages = [p["message"] for p in problems_of(doc)]
    assert any("cycle" in m for m in messages)


def test_references_and_constraints_must_name_existing_things() -> None:
    doc = sample()
    doc["assemblies"][0]["resources"][0]["parameters"]["x"] = {"ref": "nosuch:hostname"}
    doc["constraints"].append({"first": "db/nosuch", "then": "web/www"})
    paths = {p["path"] for p in problems_of(doc)}
    assert "assemblies[0].resources[0].parameters.x" in paths
    assert "constraints[1].first" in paths


def test_unknown_fields_and_wrong_types() -> None:
    doc = sample()
    doc["colour"] = "blue"
    doc["assemblies"][0]["resources"] = "none"
    paths = {p["path"] for p in problems_of(doc)}
    assert {"colour", "assemblies[0].resources"} <= paths
    assert problems_of([1, 2])[0]["path"] == ""


@pytest.mark.parametrize(
    ("text", "seconds"), [("10", 10.0), ("10s", 10.0), ("500ms", 0.5), ("2m", 120.0), (3, 3.0)]
)
def test_durations(text: object, seconds: float) -> None:
    assert model.parse_duration(text) == seconds


@pytest.mark.parametrize("value", ["INFINITY", "-1", -1, None, ""])
def test_escalation_disabled_words(value: object) -> None:
    assert model.parse_escalation_count(value) == 0


def test_half_set_escalation_is_disabled() -> None:
    doc = sample()
    doc["escalation"] = {"failures": 3}
    assert not model.parse(doc).escalation.enabled


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), max_size=12))
def test_find_cycle_agrees_with_a_topological_sort(edges: list[tuple[int, int]]) -> None:
    rid = [model.ResourceId("a", f"r{i}") for i in range(6)]
    constraints = tuple(model.Constraint(rid[a], rid[b]) for a, b in edges if a != b)
    cycle = model.find_cycle(constraints)
    if cycle is not None:
        assert cycle[0] == cycle[-1]
        pairs = {(c.first, c.then) for c in constraints}
        assert all((x, y) in pairs for x, y in itertools.pairwise(cycle))
    else:
        order: list[model.ResourceId] = []
        remaining = {(c.first, c.then) for c in constraints}
        nodes = {n for pair in remaining for n in pair}
        while nodes:
            free = [n for n in nodes if not any(t == n for _, t in remaining)]
            assert free, "no cycle reported, yet no node is free"
            order.extend(free)
            nodes -= set(free)
            remaining = {(f, t) for f, t in remaining if f not in free}


def test_shape_and_cross_problems_come_together_at_the_document_own_places() -> None:
    """A constraint left out for its shape does not move the paths of those after it,
    and a misspelt assembly name is reported once, not also where it is referred to."""
    doc = sample()
    doc["constraints"] = [
        {"first": "web/www", "then": 7},
        {"first": "web/www", "then": "web/nosuch"},
    ]
    doc["assemblies"][1]["name"] = "d b"
    doc["assemblies"][0]["resources"][0]["parameters"]["db"] = {"ref": "d b:ipaddress"}
    problems = {(p["path"], p["message"]) for p in problems_of(doc)}
    assert ("constraints[0].then", "must be ASSEMBLY/RESOURCE or SERVICE: 7") in problems
    assert ("constraints[1].then", "no such resource in the deployable: web/nosuch") in problems
    assert {path for path, _ in problems} == {
        "assemblies[1].name",
        "constraints[0].then",
        "constraints[1].then",
    }


def test_a_reference_may_wait_for_its_assembly_when_asked() -> None:
    doc = sample()
    doc["assemblies"][0]["resources"][0]["parameters"]["x"] = {"ref": "later:hostname"}
    assert "assemblies[0].resources[0].parameters.x" in {p["path"] for p in problems_of(doc)}
    waiting = model.parse(doc, references_may_wait=True)
    assert [a.name for a in waiting.assemblies] == ["web", "db"]


def test_missing_fields_are_named_with_what_they_are_for() -> None:
    doc = sample()
    doc["services"] = [{"name": "cache", "type": "Dummy"}]
    del doc["assemblies"][1]["name"]
    messages = {p["path"]: p["message"] for p in problems_of(doc)}
    assert messages["services[0].locations"] == "required: the assemblies it may run on"
    assert messages["assemblies[1].name"] == "required"


@pytest.mark.parametrize(
    ("word", "mode"),
    [("active", "active"), ("am", "active"), ("passive", "passive"), ("pm", "passive")],
)
def test_monitoring_takes_the_originals_words_too(word: str, mode: str) -> None:
    parsed = model.parse(sample() | {"monitoring": word})
    assert parsed.monitoring == mode
    assert model.parse(parsed.to_dict()).monitoring == mode


def test_monitoring_is_active_unless_said_otherwise() -> None:
    parsed = model.parse(sample())
    assert (parsed.monitoring, parsed.to_dict()["monitoring"]) == ("active", "active")


@pytest.mark.parametrize("word", ["ACTIVE", "poll", "", 1, None])
def test_monitoring_is_one_of_two_modes(word: object) -> None:
    with pytest.raises(InvalidInput) as caught:
        model.parse(sample() | {"monitoring": word})
    assert "monitoring: must be active or passive (or am, pm)" in str(caught.value)


@pytest.mark.parametrize(
    ("value", "words"),
    [(float("nan"), "not a duration: nan (not a number)"), (-1, "not a duration: -1 (negative)")],
)
def test_a_numeric_duration_that_is_not_one_says_why(value: float, words: str) -> None:
    with pytest.raises(ValueError) as caught:
        model.parse_duration(value)
    assert str(caught.value) == words
