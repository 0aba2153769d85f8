"""Resource templates added from the shell, and resources naming an agent directly
(``ocf:PROVIDER:TYPE``, ``lsb:NAME``, ``systemd:UNIT``): from the agent's meta-data,
refused when the host has no such agent."""

from __future__ import annotations

import json
import shlex

import pytest

from dpe.agent_metadata import parse_metadata, parse_spec
from foundation.errors import InvalidInput
from pcloudsh.environment import Environment
from pcloudsh.testing import run
from tests.unit.inprocess import InProcessCped
from tests.unit.pcloudsh.fakes import DUMMY_METADATA, FakeAgents


def test_the_metadata_gives_description_parameters_and_advice() -> None:
    info = parse_metadata(parse_spec("ocf:heartbeat:Dummy"), DUMMY_METADATA)
    assert info.description == "Example stateless resource agent"
    assert [(p.name, p.required) for p in info.parameters] == [("state", False), ("fake", True)]
    assert info.timeouts == {"start": 20.0, "stop": 25.0, "monitor": 15.0}
    assert info.monitor_interval == 7.0
    assert info.parameters_help() == {"state": "State file", "fake": "Fake attribute (required)"}


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        ("ocf:heartbeat:IPaddr2", {"class": "ocf", "provider": "heartbeat", "type": "IPaddr2"}),
        ("lsb:httpd", {"class": "lsb", "type": "httpd"}),
        ("systemd:nginx.service", {"class": "systemd", "type": "nginx"}),
    ],
)
def test_agent_specs_as_pacemaker_writes_them(text: str, fields: dict[str, str]) -> None:
    assert parse_spec(text).resource_fields() == fields


@pytest.mark.parametrize("text", ["ocf:heartbeat", "ocf::Dummy", "lsb:", "upstart:x", "ocf:a:b/c"])
def test_a_malformed_agent_is_refused(text: str) -> None:
    with pytest.raises(InvalidInput, match="expected ocf:PROVIDER:TYPE, lsb:NAME or systemd:UNIT"):
        parse_spec(text)


def test_resource_template_add_from_the_metadata_then_show_and_delete(
    agents_env: Environment, shop: InProcessCped
) -> None:
    ran = run(
        agents_env, "resource_template_add mine ocf:heartbeat:Dummy fake=yes --timeout stop=1m"
    )
    assert (ran.status, ran.out) == (0, "resource template mine (ocf:heartbeat:Dummy) added\n")
    template = json.loads(run(agents_env, "--json resource_template_show mine").out)
    assert template["description"] == "Example stateless resource agent"
    assert template["resource"]["parameters"] == {"fake": "yes"}
    assert template["resource"]["monitor_interval"] == 7
    assert template["resource"]["timeouts"] == {"monitor": 15, "start": 20, "stop": 60}
    assert template["parameters_help"]["fake"] == "Fake attribute (required)"
    assert "mine" in run(agents_env, "resource_template_list").out
    assert run(agents_env, "resource_template_delete mine").status == 0
    assert run(agents_env, "resource_template_show mine").status == 2


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("resource_template_add t ocf:heartbeat:Nosuch", "no such agent on this host"),
        ("resource_template_add t ocf:heartbeat:Dummy colour=red", "unknown parameter 'colour'"),
        ("resource_template_add dummy ocf:heartbeat:Dummy", "'dummy' is a built-in"),
        ("resource_template_delete dummy", "built-in resource template"),
        ("assembly_resource_add web/x systemd:nosuch", "no such agent on this host"),
        ("assembly_resource_add web/x ocf:heartbeat:Dummy colour=red", "it takes: state, fake"),
        ("assembly_resource_add web/x ocf:heartbeat", "expected ocf:PROVIDER:TYPE"),
    ],
)
def test_an_agent_the_host_has_not_or_a_parameter_it_takes_not_is_refused(
    agents_env: Environment, shop: InProcessCped, line: str, says: str
) -> None:
    before = shop.tables()
    ran = run(agents_env, line)
    assert (ran.status, ran.out) == (2, ""), ran
    assert says in ran.err
    assert shop.tables() == before


def test_a_resource_names_an_agent_directly(agents_env: Environment, shop: InProcessCped) -> None:
    assert run(agents_env, "assembly_resource_add web/a ocf:heartbeat:Dummy fake=1").status == 0
    assert run(agents_env, "assembly_resource_add web/b ocf:acme:Quiet x=1").status == 0
    assert run(agents_env, "assembly_resource_add web/c lsb:ssh").status == 0
    a, b, c = shop.get_assembly("web")["resources"][1:]
    # the shipped template of the agent is used: its interval, not the meta-data's
    dummy = shop.get_template("dummy")["resource"]
    assert (a["type"], a["monitor_interval"]) == ("Dummy", dummy["monitor_interval"])
    assert a["parameters"]["fake"] == "1"
    # no template of its own and no meta-data: the agent with what the shell was given
    assert (b["provider"], b["type"], b["parameters"]) == ("acme", "Quiet", {"x": "1"})
    assert (c["class"], c["type"]) == ("lsb", "ssh")


@pytest.fixture
def agents_env(env: Environment, cped: InProcessCped) -> Environment:
    import dataclasses

    host = FakeAgents()  # cped's host is the same fake one: the local infrastructure's
    cped.context.catalog.host_agent = lambda spec: host(str(spec))
    return dataclasses.replace(env, read_agent=FakeAgents())


@pytest.mark.parametrize(
    ("description", "message"),
    [
        ("a\nb", r"invalid description: control character '\n' not allowed"),
        ("a\x1b[31mred", r"invalid description: control character '\x1b' not allowed"),
        ("abc\u202edcba", r"invalid description: control character '\u202e' not allowed"),
        ("one\u2028two", r"invalid description: control character '\u2028' not allowed"),
        ("x" * 501, "invalid description: too long: 501 characters (at most 500)"),
    ],
)
def test_a_template_description_is_one_line_of_bounded_length(
    agents_env: Environment, shop: InProcessCped, description: str, message: str
) -> None:
    before = shop.tables()
    ran = run(
        agents_env,
        f"resource_template_add t2 ocf:heartbeat:Dummy fake=1 --description {shlex.quote(description)}",
    )
    assert (ran.status, ran.out) == (2, ""), ran
    assert message in ran.err, ran.err
    assert shop.tables() == before


def test_a_plain_description_of_the_limit_is_taken(
    agents_env: Environment, shop: InProcessCped
) -> None:
    ran = run(
        agents_env, f"resource_template_add t2 ocf:heartbeat:Dummy fake=1 --description {'é' * 500}"
    )
    assert ran.status == 0, ran
    assert "é" * 500 in run(agents_env, "resource_template_show t2").out.replace("\n", "")


def test_a_description_may_hold_any_space_and_any_script(
    agents_env: Environment, shop: InProcessCped
) -> None:
    text = "Serveur\u00a0web — 東京 ✓"  # a no-break space, a dash, CJK, a symbol
    ran = run(
        agents_env,
        f"resource_template_add t3 ocf:heartbeat:Dummy fake=1 --description {shlex.quote(text)}",
    )
    assert ran.status == 0, ran
    assert text in run(agents_env, "resource_template_show t3").out


def test_the_api_refuses_a_description_with_a_control_character(
    shop: InProcessCped,
) -> None:
    body = {"name": "t3", "description": "a\x1b[31m", "resource": {"class": "ocf", "type": "Dummy"}}
    with pytest.raises(InvalidInput, match="control character"):
        shop.create_template(body)
