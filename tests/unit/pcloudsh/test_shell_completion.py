"""``pcloudsh --complete INDEX WORD...``: what bash offers at each position."""

from __future__ import annotations

import dataclasses
import shlex

from pcloudsh.environment import Environment
from pcloudsh.testing import run
from tests.unit.inprocess import InProcessCped
from tests.unit.pcloudsh.fakes import DownCped


def offered(env: Environment, line: str) -> list[str]:
    """Candidates for the last word of ``line`` (a trailing space: a new word)."""
    words = line.split(" ")
    ran = run(env, shlex.join(["--complete", str(len(words) - 1), *words]))
    assert (ran.status, ran.err) == (0, "")
    return ran.out.split()


def test_command_names_by_prefix(env: Environment) -> None:
    assert offered(env, "deployable_st") == [
        "deployable_start",
        "deployable_status",
        "deployable_stop",
    ]
    assert "jeos_list" in offered(env, "")


def test_global_options_then_a_command(env: Environment) -> None:
    assert offered(env, "--") == ["--help", "--json", "--version"]
    assert offered(env, "--json assembly_l") == ["assembly_list"]


def test_existing_names_for_an_argument(env: Environment, shop: InProcessCped) -> None:
    assert offered(env, "deployable_status ") == ["shop"]
    assert offered(env, "assembly_delete w") == ["web"]


def test_names_that_depend_on_an_earlier_argument(env: Environment, shop: InProcessCped) -> None:
    assert offered(env, "deployable_constraint_add shop db/") == ["db/pg"]
    assert offered(env, "deployable_simulate shop --fail w") == ["web", "web/www"]


def test_an_options_choices_and_the_commands_options(env: Environment, shop: InProcessCped) -> None:
    assert offered(env, "deployable_export shop --format ") == ["cib", "json", "xml"]
    assert "--format" in offered(env, "deployable_export shop --")


def test_help_completes_command_names(env: Environment) -> None:
    assert offered(env, "help jeos_c") == ["jeos_create"]


def test_nothing_and_no_error_when_cped_is_down(env: Environment) -> None:
    down = dataclasses.replace(env, connect=lambda _paths: DownCped())
    assert offered(down, "deployable_status ") == []


def test_an_unknown_command_offers_nothing(env: Environment) -> None:
    assert offered(env, "nosuch ") == []


SERVICE_CATALOG = [
    "assembly_create n1 host",
    "assembly_create n2 host",
    "assembly_create spare host",  # in no deployable
    "deployable_assembly_add shop n1",
    "deployable_assembly_add shop n2",
    "deployable_service_add shop cache dummy --on n1:100,n2",
    "deployable_service_add shop queue dummy --on n2",
]


def test_names_within_the_deployable_on_the_line(env: Environment, shop: InProcessCped) -> None:
    for line in SERVICE_CATALOG:
        assert run(env, line).status == 0, line
    assert offered(env, "deployable_assembly_remove shop ") == ["db", "n1", "n2", "web"]
    assert offered(env, "assembly_ssh shop n") == ["n1", "n2"]
    assert offered(env, "deployable_service_remove shop ") == ["cache", "queue"]
    assert offered(env, "deployable_service_move shop cache ") == ["n1", "n2"]
    assert offered(env, "deployable_service_move shop queue ") == ["n2"]
    assert offered(env, "deployable_colocation_add shop cache q") == ["queue"]
    assert offered(env, "deployable_constraint_add shop c") == ["cache"]
    assert offered(env, "deployable_cleanup shop n1") == ["n1", "n1/cache"]
    assert offered(env, "deployable_simulate shop --fail n2/") == ["n2/cache", "n2/queue"]
    assert offered(env, "deployable_service_remove nosuch ") == []


def test_only_what_the_command_would_take_is_offered(env: Environment, shop: InProcessCped) -> None:
    for line in SERVICE_CATALOG[:3]:
        assert run(env, line).status == 0, line
    assert run(env, "deployable_assembly_add shop n1").status == 0
    # an assembly is in one deployable at most: only those in none
    assert offered(env, "deployable_assembly_add shop ") == ["n2", "spare"]
    # built-in templates cannot be deleted
    assert offered(env, "resource_template_delete ") == []
    assert run(env, "resource_template_add mine ocf:heartbeat:Dummy").status == 0
    assert offered(env, "resource_template_delete ") == ["mine"]
    assert "dummy" in offered(env, "assembly_resource_add n1/x ")  # every template there


def test_infrastructures_are_offered_without_cped(env: Environment) -> None:
    down = dataclasses.replace(env, connect=lambda _paths: DownCped())
    assert offered(down, "deployable_create shop ") == ["libvirt", "local", "openstack"]
