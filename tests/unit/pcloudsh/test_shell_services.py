"""pcloudsh's service commands: add, list, set, move, colocation, remove."""

from __future__ import annotations

import json
from typing import Any

import pytest

from foundation.runtime_kinds import MOVE
from pcloudsh.environment import Environment
from pcloudsh.testing import run
from tests.unit.inprocess import InProcessCped


def services_of(cped: InProcessCped) -> list[dict[str, Any]]:
    return list(cped.get_deployable("shop").get("services", []))


@pytest.fixture
def pair(env: Environment, shop: InProcessCped) -> InProcessCped:
    """The shop with two more assemblies a service may run on."""
    for line in (
        "assembly_create n1 host",
        "assembly_create n2 host",
        "deployable_assembly_add shop n1",
        "deployable_assembly_add shop n2",
    ):
        assert run(env, line).status == 0, line
    return shop


def test_a_service_is_made_from_a_template_with_scored_assemblies(
    env: Environment, pair: InProcessCped
) -> None:
    ran = run(
        env,
        "deployable_service_add shop cache dummy --on n1:100,n2 state=/run/c"
        " --stickiness 60 --migration-threshold 3 --failure-timeout 2m",
    )
    assert (ran.status, ran.err) == (0, "")
    assert ran.out == (
        "service cache (ocf:heartbeat:Dummy) added to deployable shop: on n1:100, n2:0\n"
    )
    (service,) = services_of(pair)
    assert service["locations"] == [
        {"assembly": "n1", "score": 100},
        {"assembly": "n2", "score": 0},
    ]
    assert service["parameters"] == {"fake": "1", "state": "/run/c"}
    assert (service["stickiness"], service["migration_threshold"]) == (60, 3)
    assert service["failure_timeout"] == 120
    lines = run(env, "deployable_service_list shop").out.splitlines()
    assert lines[2].split()[:5] == ["cache", "ocf:heartbeat:Dummy", "n1:100", "n2:0", "60"]
    data = json.loads(run(env, "deployable_service_list shop --json").out)
    assert [s["name"] for s in data] == ["cache"]


def test_order_colocation_move_and_removal(env: Environment, pair: InProcessCped) -> None:
    run(env, "deployable_service_add shop cache dummy --on n1:100,n2:50")
    run(env, "deployable_service_add shop queue dummy --on n1,n2")
    assert run(env, "deployable_constraint_add shop cache web/www").status == 0
    ran = run(env, "deployable_colocation_add shop queue cache --score=-INFINITY")
    assert ran.out == "colocation queue with cache (-INFINITY) added to deployable shop\n"
    assert pair.get_deployable("shop")["colocations"] == [
        {"service": "queue", "with": "cache", "score": "-INFINITY"}
    ]
    ran = run(env, "deployable_service_move shop cache n2")
    assert ran.status == 0 and "move to n2 requested" in ran.out
    moves = pair.store.get_runtime("shop")[MOVE]  # what the DPE acts on
    assert {service: move["to"] for service, move in moves.items()} == {"cache": "n2"}
    ran = run(env, "deployable_service_set shop cache --stickiness INFINITY")
    assert ran.status == 0
    assert services_of(pair)[0]["stickiness"] == "INFINITY"
    refused = run(env, "deployable_service_remove shop cache")  # still ordered and colocated
    assert refused.status != 0
    assert "no such service in the deployable: cache" in refused.err
    run(env, "deployable_constraint_remove shop cache web/www")
    run(env, "deployable_colocation_remove shop queue cache")
    assert run(env, "deployable_service_remove shop cache").status == 0
    assert [s["name"] for s in services_of(pair)] == ["queue"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("deployable_service_add shop c dummy --on n1:lots", "invalid score in 'n1:lots'"),
        ("deployable_service_add shop c dummy --on n1,nowhere", "no assembly 'nowhere'"),
        ("deployable_service_add shop c dummy --on 'bad name'", "invalid assembly name"),
        ("deployable_service_move shop ghost n1", "has no service 'ghost'"),
        ("deployable_colocation_add shop ghost db", "no service 'ghost'"),
        ("deployable_service_set shop ghost --stickiness 1", "has no service 'ghost'"),
    ],
)
def test_bad_input_is_named_and_changes_nothing(
    env: Environment, pair: InProcessCped, line: str, message: str
) -> None:
    ran = run(env, line)
    assert ran.status != 0
    assert message in ran.err, ran.err
    assert "Traceback" not in ran.err
    assert not services_of(pair)


def test_a_move_to_an_assembly_the_service_is_banned_from_is_refused(
    env: Environment, pair: InProcessCped
) -> None:
    """A move counts as INFINITY there, which -INFINITY outweighs: it would never happen."""
    run(env, "deployable_service_add shop cache dummy --on n1:100,n2:-INFINITY")
    ran = run(env, "deployable_service_move shop cache n2")
    assert (ran.status, ran.out) == (2, "")
    assert ran.err.startswith(
        "pcloudsh: error: invalid move: service 'cache' never runs on 'n2' (its score there"
        " is -INFINITY): change it with deployable_service_set --on first\n"
    )
    assert MOVE not in pair.store.get_runtime("shop")


@pytest.mark.parametrize("fmt", ["xml", "json"])
def test_services_survive_export_and_import(
    env: Environment, pair: InProcessCped, fmt: str
) -> None:
    run(env, "deployable_service_add shop cache dummy --on n1:100,n2:50 --stickiness 60")
    run(env, "deployable_service_add shop queue dummy --on n1,n2 fake=@cache:ipaddress")
    run(env, "deployable_colocation_add shop queue cache --score=-INFINITY")
    run(env, "deployable_constraint_add shop cache web/www")
    before = pair.get_deployable("shop")
    text = run(env, f"deployable_export shop --format {fmt}").out
    run(env, "deployable_delete shop")
    ran = run(env, f"deployable_import - --format {fmt}", stdin=text)
    assert ran.status == 0, ran
    assert pair.get_deployable("shop") == before
    assert before["services"][1]["parameters"]["fake"] == {"ref": "cache:ipaddress"}


def test_events_of_a_service_without_events_is_empty(env: Environment, pair: InProcessCped) -> None:
    assert run(env, "deployable_service_add shop cache dummy --on n1:100,n2").status == 0
    assert run(env, "events --resource cache") == ("no events\n", "", 0)
