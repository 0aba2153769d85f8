"""Bad input: a clear message on stderr, exit status 2, and nothing changed in cped or the keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pcloudsh.environment import Environment
from pcloudsh.testing import run, shell_for
from tests.unit.inprocess import InProcessCped
from tests.unit.pcloudsh.fakes import FakeKeys

BAD_LINES = [
    # names that cannot be names
    ("assembly_create a/b host", "invalid assembly name 'a/b'"),
    ("assembly_create 'a b' host", "invalid assembly name 'a b'"),
    ("assembly_create .. host", "invalid assembly name '..'"),
    ("assembly_create ../etc host", "invalid assembly name '../etc'"),
    ("assembly_create new ho/st", "invalid JEOS name 'ho/st'"),
    ("deployable_create 'sh op'", "invalid deployable name 'sh op'"),
    ("assembly_resource_add web/r/x dummy", "invalid resource 'web/r/x': expected ASSEMBLY/"),
    ("assembly_resource_add r dummy", "invalid resource 'r': expected ASSEMBLY/RESOURCE"),
    ("assembly_resource_add web/r dummy x=1 db", "invalid parameter 'db'"),
    ("deployable_assembly_add shop ..", "invalid assembly name '..'"),
    # unknown names
    ("assembly_create new nosuch", "no such JEOS image: 'nosuch'"),
    ("assembly_clone nosuch copy", "no such assembly: 'nosuch'"),
    ("assembly_delete nosuch", "no such assembly: 'nosuch'"),
    ("assembly_resource_add r nosuch web", "no such resource template: 'nosuch'"),
    (
        "assembly_resource_add web/r Dummy",  # this host's agent, without its class
        "no such resource template: 'Dummy' (an agent is named with its class: ocf:heartbeat:Dummy",
    ),
    ("assembly_resource_add r dummy nosuch", "no such assembly: 'nosuch'"),
    ("assembly_resource_remove nosuch web", "assembly 'web' has no resource 'nosuch'"),
    ("assembly_resource_list nosuch", "no such assembly: 'nosuch'"),
    ("escalation_resource_set nosuch web 3 60", "resource 'nosuch' is not in assembly 'web'"),
    ("escalation_assembly_set nosuch 3 60", "no such assembly: 'nosuch'"),
    ("escalation_deployable_set nosuch 3 60", "no such deployable: 'nosuch'"),
    ("deployable_delete nosuch", "no such deployable: 'nosuch'"),
    ("deployable_assembly_add shop nosuch", "no such assembly: 'nosuch'"),
    ("deployable_assembly_add nosuch web", "no such deployable: 'nosuch'"),
    ("deployable_assembly_remove shop nosuch", "'nosuch' is not in deployable 'shop'"),
    ("deployable_export nosuch", "no such deployable: 'nosuch'"),
    ("deployable_constraint_add shop web/nosuch db/pg", "no such resource in the deployable"),
    ("deployable_constraint_remove shop web/www db/pg", "has no constraint"),
    ("resource_template_show nosuch", "no such resource template: 'nosuch'"),
    ("deployable_start nosuch", "no such deployable: 'nosuch'"),
    # duplicates
    ("assembly_create web host", "assembly 'web' already exists"),
    ("assembly_clone web db", "assembly 'db' already exists"),
    ("assembly_resource_add www dummy web", "assembly 'web' already has a resource 'www'"),
    ("deployable_create shop", "deployable 'shop' already exists"),
    ("deployable_assembly_add shop web", "assembly 'web' is already in this deployable"),
    ("deployable_constraint_add shop db/pg web/www", "already has the constraint db/pg -> web/www"),
    # values
    ("escalation_resource_set www web x 60", "invalid FAILURES 'x'"),
    ("escalation_resource_set www web 3 soon", "invalid PERIOD 'soon'"),
    ("escalation_assembly_set web 3.5 60", "invalid FAILURES '3.5'"),
    ("escalation_deployable_set shop -3 60", "invalid FAILURES '-3'"),
    ("escalation_deployable_set shop 3 -60", "invalid PERIOD '-60'"),
    ("deployable_create new cloudy", "invalid infrastructure 'cloudy'"),
    ("deployable_create new local --uri qemu:///system", "--uri applies to the libvirt"),
    ("deployable_create new libvirt --set novalue", "not a KEY=VALUE setting: 'novalue'"),
    (
        "deployable_create d2 --set start_timeout=5 --set start_timeout=7",
        "setting 'start_timeout' given twice",
    ),
    ("deployable_export shop -o ''", "-o needs a file name: '' names none"),
    ("deployable_export shop --output= --format xml", "-o needs a file name"),
    # openstack settings, checked by the driver's rules before the cloud is asked
    ("deployable_create new openstack --set cloud=c --set network=n", "settings.flavor: required"),
    (
        "deployable_create new openstack --set cloud=c --set flavor=f --set network=n --set hue=1",
        "settings.hue: unknown setting",
    ),
    ("assembly_resource_add r dummy web noequals", "invalid parameter 'noequals'"),
    ("assembly_resource_add r dummy web 9x=1", "invalid parameter '9x=1'"),
    ("assembly_resource_add r dummy web x=@db:mac", "invalid reference '@db:mac'"),
    ("assembly_resource_add r dummy web x=@d/b:hostname", "invalid assembly name 'd/b'"),
    ("assembly_resource_add r dummy web --timeout bogus=1", "invalid timeout 'bogus=1'"),
    ("assembly_resource_add r dummy web --timeout start=0", "invalid timeout of start '0'"),
    ("assembly_resource_add r dummy web --monitor-interval 10x", "invalid monitor interval '10x'"),
    ("deployable_constraint_add shop web db/pg", "no such service in the deployable: web"),
    ("deployable_constraint_add shop db/pg a/b/c", "invalid THEN 'a/b/c'"),
    ("deployable_constraint_add shop web/www db/pg", "form a cycle"),
    ("deployable_import /nonexistent/shop.json", "cannot read /nonexistent/shop.json"),
    ("events --since yesterday", "invalid time 'yesterday'"),
    ("deployable_export shop --format xml --json", "--json prints JSON"),
    ("escalation_assembly_set web 3 -1s", "invalid PERIOD '-1s'"),  # a value, not an option
]

USAGE_LINES = [
    ("assembly_create", "the following arguments are required: NAME, JEOS"),
    ("assembly_create a b c", "unrecognized arguments: c"),
    ("deployable_export shop --format yaml", "invalid choice: 'yaml'"),
    ("events --limit many", "invalid int value: 'many'"),
    ("nosuch", "unknown command 'nosuch'"),
    ("deployable_lst", "did you mean deployable_list?"),
    ("deployable_stat", "did you mean deployable_start or deployable_status?"),
    ("--bogus deployable_list", "unknown option '--bogus'"),
]


@pytest.mark.parametrize(("line", "message"), BAD_LINES, ids=[line for line, _ in BAD_LINES])
def test_bad_input_is_refused_with_a_clear_line(
    env: Environment, shop: InProcessCped, keys: FakeKeys, line: str, message: str
) -> None:
    before, keys_before = shop.tables(), set(keys.made)
    ran = run(env, line)
    assert ran.status == 2, ran
    assert ran.out == ""
    assert ran.err.startswith("pcloudsh: error: ")
    assert message in ran.err
    assert "Traceback" not in ran.err
    assert shop.tables() == before
    assert keys.made == keys_before


@pytest.mark.parametrize(("line", "message"), USAGE_LINES, ids=[line for line, _ in USAGE_LINES])
def test_bad_usage_shows_usage_and_exits_2(
    env: Environment, shop: InProcessCped, line: str, message: str
) -> None:
    before = shop.tables()
    ran = run(env, line)
    assert ran.status == 2, ran
    assert ran.out == ""
    assert ran.err.startswith("usage: pcloudsh")
    assert message in ran.err
    assert shop.tables() == before


MALFORMED = [
    ('{"name": "x", ', "not valid JSON"),
    ("<deployable name='x'><assemblies>", "XML"),
    ("name: [unclosed", "not valid YAML"),
    ("[1, 2]", "must be an object, not a list"),
    ("null", "must be an object, not null"),
    ('{"name": ' + "9" * 5000 + "}", "a number is too long (at most 4300 digits)"),
    ("[" * 100_000 + "]" * 100_000, "not valid JSON: nested too deeply"),
    ('{"name": "x", "assemblies": ' + "[" * 900 + "]" * 900 + "}", "nested too deeply"),
    ("name: " + "[" * 100_000 + "]" * 100_000, "not valid YAML: nested too deeply"),
    ("", "empty: expected a deployable document (JSON, YAML or XML)"),
    (" \n\t\n", "empty: expected a deployable document (JSON, YAML or XML)"),
]


@pytest.mark.parametrize(("text", "message"), MALFORMED)
def test_malformed_import_file(
    env: Environment, shop: InProcessCped, keys: FakeKeys, text: str, message: str
) -> None:
    before, keys_before = shop.tables(), set(keys.made)
    ran = run(env, "deployable_import -", stdin=text)
    assert ran.status == 2, ran
    assert ran.err.startswith("pcloudsh: error: standard input: ")
    assert message in ran.err
    assert shop.tables() == before and keys.made == keys_before


def test_a_file_that_is_no_document_is_never_echoed(
    env: Environment, shop: InProcessCped, keys: FakeKeys
) -> None:
    secret = "$y$j9T$Zm9vYmFy$c2VjcmV0aGFzaA"
    shadow = f"root:{secret}:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n"
    before = shop.tables()
    ran = run(env, "deployable_import -", stdin=shadow)
    assert ran.status == 2 and shop.tables() == before
    assert "root" not in ran.err and secret not in ran.err and "daemon" not in ran.err
    assert ran.err.count("unknown field whose name is not a field name (not shown)") == 2
    assert "name: required" in ran.err
    plain = run(env, "deployable_import -", stdin='{"name": "x", "colour": 1}')
    assert "colour: unknown field" in plain.err  # a key that is a name is still named


def test_invalid_document_lists_every_problem_with_its_path(
    env: Environment, shop: InProcessCped, keys: FakeKeys, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    document = tmp_path / "bad.json"
    document.write_text(
        '{"name": "shop", "assemblies": [{"name": "web", "resources": '
        '[{"name": "www", "type": "Dummy", "monitor_interval": "10x"}]}, {"name": "a b"}], '
        '"constraints": [{"first": "web/www", "then": "db/none"}]}'
    )
    before = shop.tables()
    ran = run(env, f"deployable_import {document}")
    assert ran.status == 2
    lines = ran.err.splitlines()
    assert lines[0] == "pcloudsh: error: invalid deployable document:"
    problems = [line.strip() for line in lines[1:]]
    assert "assemblies[0].resources[0].monitor_interval: not a duration: '10x'" in problems
    assert any(p.startswith("assemblies[1].name: not a valid name: 'a b'") for p in problems)
    assert "constraints[0].then: no such resource in the deployable: db/none" in problems
    assert shop.tables() == before and keys.made == {"web", "db"}


def test_server_problems_are_listed_one_per_line(env: Environment, shop: InProcessCped) -> None:
    from foundation.errors import InvalidInput

    refusal = InvalidInput(
        "invalid deployable document",
        details=[
            {"path": "assemblies[0].image", "message": "no JEOS image named 'f16'"},
            {"path": "", "message": "something else"},
        ],
    )
    shop.answer("put_deployable", "shop", answer=refusal)
    ran = run(env, "deployable_import -", stdin='{"name": "shop"}')
    assert ran.status == 2
    assert ran.err.splitlines() == [
        "pcloudsh: error: invalid deployable document",
        "  assemblies[0].image: no JEOS image named 'f16'",
        "  something else",
    ]


def test_a_deeply_nested_file_is_refused_in_the_interactive_shell_too(
    env: Environment, shop: InProcessCped, tmp_path: Path
) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    before = shop.tables()
    ran = run(shell_for(env), f"deployable_import {deep}")
    assert ran.status == 2 and ran.out == ""
    assert ran.err.startswith(f"pcloudsh: error: {deep}: not valid JSON: nested too deeply")
    assert shop.tables() == before


def test_a_monitor_interval_of_nan_is_not_a_number(
    env: Environment, shop: InProcessCped, keys: FakeKeys
) -> None:
    resource = {"name": "r", "type": "Dummy", "monitor_interval": float("nan")}
    text = json.dumps({"name": "x", "assemblies": [{"name": "a", "resources": [resource]}]})
    assert "NaN" in text  # as Python's json writes it, and reads it back
    before = shop.tables()
    ran = run(env, "deployable_import -", stdin=text)
    assert ran.status == 2 and "monitor_interval: not a duration: nan (not a number)" in ran.err
    assert "negative" not in ran.err and shop.tables() == before
