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
