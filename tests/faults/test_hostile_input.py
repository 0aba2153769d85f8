"""Hostile names, parameters and template fields against a real cped and dped.

Names (of assemblies, deployables, resources, templates and parameters) with
shell metacharacters, quotes, newlines, ``../`` or thousands of characters are
refused with 400 (``InvalidInput``) and change nothing.  Parameter *values* are
data: they are accepted, stored as given, and reach the agent in its
environment without any shell evaluating them (the agent-level check is
``tests/integration/test_agents_real.py``; here the whole path, API to store
to dped to guest).  Template fields: the name, the resource's type, provider
and parameter names are refused like the others; the description (one line of
printable text, at most 500 characters), the parameter help texts and the
parameter values are data, stored and served back exactly as given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from foundation.errors import InvalidInput, NotFound
from tests.integration.conftest import CpedProcess
from tests.integration.test_lifecycle import Rig, dummy, shop

pytestmark = pytest.mark.integration

HOSTILE_NAMES = [
    "a;touch /tmp/x",
    "$(id)",
    "`id`",
    "a b",
    "a\nb",
    "a'b",
    'a"b',
    "../etc",
    "a/../../b",
    "..",
    "x" * 5000,
    "a|b",
    "a&b",
    "-rf",
    "",
]


def everything(rig: Rig) -> dict[str, Any]:
    client = rig.client
    return {
        "assemblies": client.list_assemblies(),
        "deployables": client.list_deployables(),
        "templates": client.list_templates(),
    }


def test_hostile_names_are_refused_everywhere_and_change_nothing(rig: Rig) -> None:
    rig.client.put_deployable("shop", shop("a1"))
    before = everything(rig)
    for name in HOSTILE_NAMES:
        refuse_everywhere(rig, name)
    assert everything(rig) == before


def refuse_everywhere(rig: Rig, name: str) -> None:
    resource = {"name": "ok", "type": "Dummy"}
    attempts = [
        lambda: rig.client.create_assembly({"name": name, "resources": []}),
        lambda: rig.client.put_deployable(name, shop("a1", name=name)),
        lambda: rig.client.add_resource("a1", dummy(name)),
        lambda: rig.client.add_resource("a1", resource | {"type": name}),
        lambda: rig.client.add_resource("a1", resource | {"provider": name}),
        lambda: rig.client.add_resource("a1", resource | {"parameters": {name: "v"}}),
        lambda: rig.client.create_template({"name": name, "resource": {"type": "Dummy"}}),
    ]
    for number, attempt in enumerate(attempts):
        # an empty name in a URL path is a route that does not exist (404)
        with pytest.raises(NotFound if name == "" and number == 1 else InvalidInput):
            attempt()
            pytest.fail(f"attempt {number} accepted the name {name[:40]!r}")


def test_hostile_parameter_values_reach_the_guest_as_inert_data(rig: Rig) -> None:
    marker = Path(rig.home) / "injected"
    value = (
        f'$(touch {marker}1) `touch {marker}2`; touch {marker}3 && echo "$HOME" \\ \'\n'
        f"|| touch {marker}4 ../../{'long' * 800}"
    )
    document = shop("a1")
    document["assemblies"][0]["resources"][0]["parameters"] = {"fake": value, "trace_ra": "1"}
    rig.client.put_deployable("shop", document)
    stored = rig.client.get_deployable("shop")["assemblies"][0]["resources"][0]
    assert stored["parameters"]["fake"] == value
    rig.client.start_deployable("shop")
    rig.running()
    assert list(marker.parent.glob("injected*")) == []
    traces = list(rig.paths.instances_dir.rglob("trace_ra/Dummy/a1-d.start.*"))
    assert len(traces) == 1
    first, second = value.split("\n")  # the trace's printenv | sort splits the two lines
    trace = traces[0].read_text().splitlines()
    assert f"OCF_RESKEY_fake={first}" in trace and second in trace


def hostile_templates(name: str) -> list[dict[str, Any]]:
    """Well-formed template documents whose only fault is ``name`` in one field."""
    resource = {"class": "ocf", "provider": "heartbeat", "type": "Dummy"}
    return [
        {"name": name, "resource": resource},
        {"name": "t", "resource": resource | {"type": name}},
        {"name": "t", "resource": resource | {"provider": name}},
        {"name": "t", "resource": resource | {"parameters": {name: "v"}}},
        {"name": "t", "resource": resource | {"name": name}},
    ]


def test_hostile_template_fields_are_refused_and_change_nothing(cped: CpedProcess) -> None:
    before = cped.client.list_templates()
    for name in HOSTILE_NAMES:
        for number, template in enumerate(hostile_templates(name)):
            with pytest.raises(InvalidInput):
                cped.client.create_template(template)
                pytest.fail(f"template {number} accepted {name[:40]!r}")
    assert cped.client.list_templates() == before


def test_template_texts_and_parameter_values_are_inert_data(cped: CpedProcess) -> None:
    hostile = "; rm -rf / $(id) `id` ' \" \\ \n../../etc/passwd " + "long" * 2000
    value = hostile[:4096]  # the longest parameter value accepted
    one_line = hostile.replace("\n", " ")[:500]  # a description: one line of a listing
    template = {
        "name": "evil",
        "description": one_line,
        "resource": {"type": "Dummy", "parameters": {"fake": value}},
        "parameters_help": {"fake": hostile, hostile[:60]: hostile},
    }
    for refused in (hostile, one_line + "x"):  # a newline would split a row; too long
        with pytest.raises(InvalidInput, match="description"):
            cped.client.create_template({**template, "description": refused})
    created = cped.client.create_template(template)
    served = cped.client.get_template("evil")
    for answer in (created, served):
        assert answer["description"] == one_line
        assert answer["parameters_help"] == template["parameters_help"]
        assert answer["resource"]["parameters"] == {"fake": value}
    cped.client.create_assembly({"name": "a1"})
    cped.client.add_resource("a1", {**served["resource"], "name": "d"})
    stored = cped.client.get_assembly("a1")["resources"][0]
    assert stored["parameters"] == {"fake": value}
