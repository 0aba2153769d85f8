"""The ``reloaded`` event, with fakes: it says what changed as ``deployable_diff``
does (every part: settings, escalation, order constraints, not only resources)."""

from __future__ import annotations

from typing import Any

from foundation.model import Deployable, parse
from tests.unit.fakes import Harness
from tests.unit.test_engine import HEARTBEAT, resource, running

PARTS = {"a1": [resource("x")], "a2": [resource("y"), resource("z")]}
FIRST = [("a1/x", "a2/y")]


def deployable(
    parts: dict[str, list[dict[str, Any]]], constraints: list[tuple[str, str]], **extra: Any
) -> Deployable:
    """As stored: each assembly keeps its uuid from one document to the next."""
    escalations = extra.pop("assembly_escalation", {})
    assemblies = [
        {
            "name": name,
            "uuid": f"{n:032x}",
            "resources": rs,
            "escalation": escalations.get(name, {}),
        }
        for n, (name, rs) in enumerate(parts.items(), 1)
    ]
    constraints_doc = [{"first": f, "then": t} for f, t in constraints]
    return parse(
        {
            "name": "dep",
            "heartbeat": HEARTBEAT,
            "assemblies": assemblies,
            "constraints": constraints_doc,
        }
        | extra
    )


def shop(constraints: list[tuple[str, str]] = FIRST, **extra: Any) -> Deployable:
    return deployable(PARTS, constraints, **extra)


async def reloaded(h: Harness, document: Deployable) -> str:
    mark = len(h.events)
    await h.reload(document)
    lines = [line for line in h.story("dep", since=mark) if "reloaded:" in line]
    assert len(lines) == 1, lines
    return lines[0].partition("reloaded: ")[2]


async def test_escalation_of_an_assembly_and_of_the_deployable_is_told() -> None:
    h = Harness()
    await running(h, shop())
    changed = shop(
        assembly_escalation={"a2": {"failures": 2, "period": 300}},
        escalation={"failures": 2, "period": 3600},
    )
    said = await reloaded(h, changed)
    assert said == (
        "1 assembly changed (a2), 2 settings changed (escalation.failures, escalation.period)"
    )


async def test_a_swapped_order_constraint_is_one_added_and_one_removed() -> None:
    h = Harness()
    await running(h, shop())
    said = await reloaded(h, shop([("a2/y", "a1/x")]))
    assert said == "1 constraint added (a2/y then a1/x), 1 constraint removed (a1/x then a2/y)"


async def test_resources_added_removed_and_changed_are_named() -> None:
    h = Harness()
    await running(h, shop())
    parts = {"a1": [resource("x"), resource("w")], "a2": [resource("y", monitor_interval=2)]}
    said = await reloaded(h, deployable(parts, FIRST))
    assert said == "1 resource added (a1/w), 1 resource removed (a2/z), 1 resource changed (a2/y)"


async def test_a_reload_that_changes_nothing_says_so() -> None:
    h = Harness()
    await running(h, shop())
    assert await reloaded(h, shop()) == "nothing changed"
