"""Values through the real pcloudsh and a real cped: checked when written (exit 2, the
bound named, nothing stored), the same refused by the API (400), one spelling in JSON,
ASSEMBLY/RESOURCE with the original order accepted, parameters after options, and each
command's ``--help`` usage line the man page's synopsis."""

from __future__ import annotations

import http.client
import json
import re
import socket
import sqlite3
from typing import Any

import pytest

from pcloudsh import commands
from tests.integration.conftest import CpedFactory
from tests.integration.test_pcloudsh_events import Shell
from tests.unit.pcloudsh import manpage

pytestmark = pytest.mark.integration

CATALOG = (
    "assembly_create web host",
    "assembly_create db host",
    "assembly_resource_add web/www dummy",
    "deployable_create shop",
    "deployable_assembly_add shop web",
    "deployable_assembly_add shop db",
)


def ok(shell: Shell, *args: str) -> str:
    done = shell.run(*args)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


# cped's own heartbeat row moves with time: it is not what a command may change
LIVENESS_TABLES = {"members"}


def rows(shell: Shell) -> dict[str, list[Any]]:
    with sqlite3.connect(shell.paths.store_file) as db:
        names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        kept = [n for n in names if n not in LIVENESS_TABLES]
        return {n: sorted(map(repr, db.execute(f"SELECT * FROM {n}"))) for n in kept}


class SocketHTTP(http.client.HTTPConnection):
    """HTTP to cped's UNIX socket, to see the status the API answers."""

    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10.0)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10.0)
        self.sock.connect(self.socket_path)


def post(shell: Shell, url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    connection = SocketHTTP(str(shell.paths.socket))
    try:
        headers = {"Content-Type": "application/json"}
        connection.request("POST", url, json.dumps(body), headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


@pytest.fixture
def shell(cped_factory: CpedFactory) -> Shell:
    shell = Shell(cped_factory().paths)
    for line in CATALOG:
        ok(shell, *line.split())
    return shell


BAD = [
    ("escalation_resource_set web/www 99999999999999999999999 60", "from 1 to 1000000"),
    ("escalation_assembly_set web 3 400d", "of at most 365 days"),
    ("assembly_resource_add web/x dummy --monitor-interval 99999999999999", "at most 1 day"),
    ("assembly_resource_add web/x anything binfile=relative/path", "must be an absolute path"),
    ("assembly_resource_add web/x dummy fake=@nosuch:ipaddress", "'nosuch': no such assembly"),
]


@pytest.mark.parametrize(("line", "says"), BAD)
def test_a_bad_value_exits_2_naming_the_bound_and_changes_nothing(
    shell: Shell, line: str, says: str
) -> None:
    before = rows(shell)
    done = shell.run(*line.split())
    assert (done.returncode, done.stdout) == (2, ""), done
    assert says in done.stderr and "Traceback" not in done.stderr
    assert rows(shell) == before


@pytest.mark.parametrize(
    ("resource", "says"),
    [
        ({"name": "x", "type": "Dummy", "monitor_interval": 99999999999999}, "at most 1 day"),
        ({"name": "x", "type": "anything", "parameters": {"binfile": "bin/x"}}, "absolute"),
        (
            {"name": "x", "type": "Dummy", "parameters": {"p": {"ref": "nosuch:ipaddress"}}},
            "no such assembly",
        ),
        (
            {"name": "x", "type": "Dummy", "escalation": {"failures": 10**23, "period": 60}},
            "at most 1000000",
        ),
    ],
)
def test_the_api_refuses_the_same_with_400(
    shell: Shell, resource: dict[str, Any], says: str
) -> None:
    before = rows(shell)
    status, error = post(shell, "/v1/assemblies/web/resources", resource)
    assert (status, error["code"]) == (400, "invalid"), error
    assert says in json.dumps(error["details"])
    assert rows(shell) == before


def test_one_spelling_in_json(shell: Shell) -> None:
    ok(shell, "escalation_resource_set", "web/www", "0", "60")
    ok(shell, "escalation_assembly_set", "web", "2", "5m")
    doc = json.loads(ok(shell, "--json", "deployable_export", "shop"))
    web = next(a for a in doc["assemblies"] if a["name"] == "web")
    assert web["escalation"] == {"failures": 2, "period": 300}
    assert web["resources"][0]["escalation"] == {"failures": 0, "period": 0}
    (row,) = json.loads(ok(shell, "--json", "deployable_list"))
    status = json.loads(ok(shell, "--json", "deployable_status", "shop"))
    assert row["desired"] == row["desired_state"] == status["desired"] == "stopped"


def test_assembly_slash_resource_and_the_original_order(shell: Shell) -> None:
    ok(shell, "assembly_resource_add", "db/pg", "dummy", "fake=2")
    ok(shell, "assembly_resource_add", "pg2", "dummy", "db", "fake=2")  # the original order
    ok(shell, "escalation_resource_set", "db/pg", "3", "60")
    ok(shell, "escalation_resource_set", "pg2", "db", "3", "60")
    resources = json.loads(ok(shell, "--json", "assembly_resource_list", "db"))
    assert [r["name"] for r in resources] == ["pg", "pg2"]
    assert resources[0] | {"name": "pg2"} == resources[1]
    ok(shell, "assembly_resource_remove", "db/pg")
    ok(shell, "assembly_resource_remove", "pg2", "db")
    assert json.loads(ok(shell, "--json", "assembly_resource_list", "db")) == []


def test_parameters_may_follow_options(shell: Shell) -> None:
    service_add = "deployable_service_add shop ip dummy --on web:100,db --stickiness 60 fake=1"
    ok(shell, *service_add.split(), "--monitor-interval", "5s", "state=@web:ipaddress")
    resource_add = "assembly_resource_add web/late dummy --monitor-interval 5s fake=3"
    ok(shell, *resource_add.split())
    (service,) = json.loads(ok(shell, "--json", "deployable_service_list", "shop"))
    assert service["parameters"]["fake"] == "1" and service["stickiness"] == 60
    assert service["parameters"]["state"] == {"ref": "web:ipaddress"}
    late = json.loads(ok(shell, "--json", "assembly_resource_list", "web"))[-1]
    assert (late["parameters"]["fake"], late["monitor_interval"]) == ("3", 5)


def test_every_commands_help_usage_is_its_man_page_synopsis(shell: Shell) -> None:
    synopses = manpage.synopses()
    for _noun, spec in commands.all_commands():
        done = shell.run(spec.name, "--help")
        assert done.returncode == 0, (spec.name, done.stderr)
        usage = done.stdout.split("\n\n", 1)[0]
        assert " ".join(usage.split()) == f"usage: pcloudsh {synopses.get(spec.name)}", spec.name


def test_cped_knows_exactly_the_local_settings_the_man_page_documents(shell: Shell) -> None:
    text = manpage.MAN_PAGE.read_text(encoding="utf-8")
    local = text.split(".SH INFRASTRUCTURE SETTINGS", 1)[1].split(".SS local\n", 1)[1]
    documented = re.findall(r"^\.TP\n\.B (\w+)$", local.split("\n.SS ", 1)[0], re.MULTILINE)
    done = shell.run("deployable_create", "d9", "local", "--set", "bogus=1")
    assert done.returncode == 2, done
    known = re.search(r"unknown setting \(known: ([^)]*)\)", done.stderr)
    assert known is not None, done.stderr
    assert sorted(known.group(1).split(", ")) == sorted(documented)
    for setting in ("subnet=10.77.0.0/24", "pid_namespace=no", "start_timeout=20s"):
        ok(shell, "deployable_create", f"d-{setting.split('=')[0]}", "local", "--set", setting)
