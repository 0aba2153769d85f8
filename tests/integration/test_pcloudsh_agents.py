"""A custom OCF agent without a hand-written document, through the real pcloudsh and
cped: a template added from its meta-data, a resource naming the agent directly that
runs, and an agent the host has not refused when written."""

from __future__ import annotations

import json

import pytest

from tests.integration.agent_support import OcfProvider, ocf_provider  # noqa: F401 - a fixture
from tests.integration.conftest import CpedFactory
from tests.integration.test_pcloudsh_events import Shell

pytestmark = pytest.mark.integration

GREETER = """\
#!/bin/sh
state="${HA_RSCTMP:-/tmp}/greeter-${OCF_RESOURCE_INSTANCE}.state"
case "$1" in
meta-data) cat <<'END'
<?xml version="1.0"?>
<resource-agent name="Greeter" version="1.0">
<shortdesc lang="en">Says hello (a test agent)</shortdesc>
<parameters>
<parameter name="greeting" required="1">
<shortdesc lang="en">What it says</shortdesc><content type="string"/>
</parameter>
</parameters>
<actions>
<action name="start" timeout="15s"/><action name="stop" timeout="15s"/>
<action name="monitor" timeout="10s" interval="3s"/>
</actions>
</resource-agent>
END
    exit 0;;
start) echo "$OCF_RESKEY_greeting" > "$state"; exit 0;;
stop) rm -f "$state"; exit 0;;
monitor) if [ -f "$state" ]; then exit 0; else exit 7; fi;;
*) exit 3;;
esac
"""


def ok(shell: Shell, *args: str, timeout: float = 60.0) -> str:
    done = shell.run(*args, timeout=timeout)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def refused(shell: Shell, *args: str) -> str:
    done = shell.run(*args)
    assert (done.returncode, done.stdout) == (2, ""), (args, done)
    assert "Traceback" not in done.stderr
    return done.stderr


@pytest.fixture
def greeter(
    cped_factory: CpedFactory,
    ocf_provider: OcfProvider,  # noqa: F811 - the fixture
) -> tuple[Shell, str]:
    """A shell on a fresh cped, and the Greeter agent installed on this host."""
    ocf_provider.install("Greeter", GREETER)
    return Shell(cped_factory().paths), f"ocf:{ocf_provider.name}:Greeter"


def test_a_custom_agent_from_its_meta_data_to_a_running_resource(
    greeter: tuple[Shell, str],
    ocf_provider: OcfProvider,  # noqa: F811 - the fixture
) -> None:
    shell, agent = greeter
    ok(shell, "resource_template_add", "greeter", agent, "greeting=hello")
    template = json.loads(ok(shell, "--json", "resource_template_show", "greeter"))
    assert template["description"] == "Says hello (a test agent)"
    assert template["parameters_help"] == {"greeting": "What it says (required)"}
    assert template["resource"]["monitor_interval"] == 3
    assert template["resource"]["timeouts"] == {"monitor": 10, "start": 15, "stop": 15}

    ok(shell, "assembly_create", "web", "host")
    assert "unknown parameter 'colour'" in refused(
        shell, "assembly_resource_add", "web/x", agent, "colour=red"
    )
    missing = f"ocf:{ocf_provider.name}:Nosuch"
    assert "no such agent on this host" in refused(shell, "assembly_resource_add", "web/x", missing)
    assert "no such agent on this host" in refused(
        shell, "resource_template_add", "t", "lsb:nosuch"
    )
    assert json.loads(ok(shell, "--json", "assembly_resource_list", "web")) == []

    ok(shell, "assembly_resource_add", "web/hello", agent, "greeting=hi")
    (hello,) = json.loads(ok(shell, "--json", "assembly_resource_list", "web"))
    assert (hello["provider"], hello["type"]) == (ocf_provider.name, "Greeter")
    assert hello["parameters"] == {"greeting": "hi"}  # over the template's "hello"

    ok(shell, "deployable_create", "shop")
    ok(shell, "deployable_assembly_add", "shop", "web")
    ok(shell, "deployable_start", "shop", "--wait", "--timeout", "2m", timeout=150)
    try:
        status = json.loads(ok(shell, "--json", "deployable_status", "shop"))
        (web,) = status["assemblies"]
        assert [(r["name"], r["state"]) for r in web["resources"]] == [("hello", "running")]
    finally:
        shell.run("deployable_stop", "shop", "--wait", timeout=90)
    ok(shell, "resource_template_delete", "greeter")
    assert "greeter" not in ok(shell, "resource_template_list")


def test_a_service_names_its_agent_directly(
    greeter: tuple[Shell, str],
    ocf_provider: OcfProvider,  # noqa: F811 - the fixture
) -> None:
    shell, agent = greeter
    ok(shell, "deployable_create", "shop")
    for name in ("a1", "a2"):
        ok(shell, "assembly_create", name, "host")
        ok(shell, "deployable_assembly_add", "shop", name)

    assert "unknown parameter 'colour'" in refused(
        shell, "deployable_service_add", "shop", "svc", agent, "--on", "a1", "colour=red"
    )
    missing = f"ocf:{ocf_provider.name}:Nosuch"
    assert "no such agent on this host" in refused(
        shell, "deployable_service_add", "shop", "svc", missing, "--on", "a1"
    )
    assert json.loads(ok(shell, "--json", "deployable_service_list", "shop")) == []

    said = ok(shell, "deployable_service_add", "shop", "svc", agent, "--on", "a1:100,a2:50")
    assert f"service svc ({agent}) added to deployable shop" in said
    (svc,) = json.loads(ok(shell, "--json", "deployable_service_list", "shop"))
    assert (svc["provider"], svc["type"]) == (ocf_provider.name, "Greeter")
    assert svc["monitor_interval"] == 3  # the agent's advice: no template was needed
    assert [(loc["assembly"], loc["score"]) for loc in svc["locations"]] == [
        ("a1", 100),
        ("a2", 50),
    ]
