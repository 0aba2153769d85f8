"""A parameter the agent does not take is refused however the resource is written:
a template, an agent named directly, a service or an imported document (this host's
ocf:heartbeat:Dummy takes state and fake); an imported document for the local
infrastructure names agents this host has, as an agent named directly must be."""

from __future__ import annotations

import json

import pytest

from pcloudsh.environment import Environment
from pcloudsh.testing import run
from tests.unit.inprocess import InProcessCped

REFUSAL = "unknown parameter 'bogus' of ocf:heartbeat:Dummy (it takes: state, fake)"


def _document(
    parameters: dict[str, str], agent: str = "Dummy", infrastructure: str = "local"
) -> str:
    resource = {"name": "x", "type": agent, "parameters": parameters}
    assembly = {"name": "imported", "resources": [resource]}
    document = {"name": "imp", "infrastructure": infrastructure, "assemblies": [assembly]}
    return json.dumps(document)


@pytest.mark.parametrize(
    "line",
    [
        "assembly_resource_add web/x dummy bogus=1",
        "assembly_resource_add web/x ocf:heartbeat:Dummy bogus=1",
        "assembly_resource_add web/x mydummy bogus=1",
        "deployable_service_add shop svc dummy bogus=1 --on web",
    ],
)
def test_a_parameter_the_agent_takes_not_is_refused(
    env: Environment, shop: InProcessCped, line: str
) -> None:
    assert run(env, "resource_template_add mydummy ocf:heartbeat:Dummy").status == 0
    before = shop.tables()
    ran = run(env, line)
    assert (ran.status, ran.out, ran.err) == (2, "", f"pcloudsh: error: {REFUSAL}\n")
    assert shop.tables() == before


def test_an_imported_resource_with_a_parameter_its_agent_takes_not_is_refused(
    env: Environment, shop: InProcessCped
) -> None:
    before = shop.tables()
    ran = run(env, "deployable_import -", stdin=_document({"bogus": "1"}))
    assert (ran.status, ran.out) == (2, "")
    assert f"assemblies[0].resources[0].parameters: {REFUSAL}" in ran.err
    assert shop.tables() == before


def test_the_parameters_the_agent_takes_are_accepted(env: Environment, shop: InProcessCped) -> None:
    assert run(env, "assembly_resource_add web/x dummy fake=2 state=/run/x").status == 0
    assert run(env, "deployable_import -", stdin=_document({"fake": "1"})).status == 0


def test_an_imported_local_resource_of_an_agent_this_host_has_not_is_refused(
    env: Environment, shop: InProcessCped
) -> None:
    before = shop.tables()
    ran = run(env, "deployable_import -", stdin=_document({}, agent="NoSuch"))
    assert (ran.status, ran.out) == (2, "")
    assert (
        "assemblies[0].resources[0].type: no such agent on this host: ocf:heartbeat:NoSuch"
        " (no executable /usr/lib/ocf/resource.d/heartbeat/NoSuch)"
    ) in ran.err
    assert run(env, "assembly_resource_add web/x ocf:heartbeat:NoSuch").status == 2
    assert shop.tables() == before


def test_a_guest_agent_the_host_has_not_is_the_guest_images_to_have(
    env: Environment, shop: InProcessCped
) -> None:
    document = _document({"colour": "red"}, agent="NoSuch", infrastructure="libvirt")
    ran = run(env, "deployable_import -", stdin=document)
    assert ran.status == 0, ran
