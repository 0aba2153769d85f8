"""The one-shot runner: global options, help, exit codes, errors on stderr only."""

from __future__ import annotations

import dataclasses
import json

import pytest

from foundation.errors import (
    AgentError,
    Conflict,
    InvalidInput,
    NotFound,
    OperationTimeout,
    Unavailable,
)
from pcloudsh import commands
from pcloudsh.api import CpedUnreachable
from pcloudsh.environment import Environment, color_wanted
from pcloudsh.exitcodes import ExitCode, exit_code_for
from pcloudsh.testing import run
from tests.unit.inprocess import InProcessCped
from tests.unit.pcloudsh.fakes import DownCped, FakeDaemon


def test_json_before_or_after_the_command(env: Environment, shop: InProcessCped) -> None:
    before, after = run(env, "--json deployable_list"), run(env, "deployable_list --json")
    assert before == after
    assert json.loads(before.out)[0]["name"] == "shop"
    assert before.err == ""


@pytest.mark.parametrize(
    ("noun", "spec"), commands.all_commands(), ids=lambda x: getattr(x, "name", "")
)
def test_every_command_has_help_and_json(
    env: Environment, noun: type, spec: commands.CommandSpec
) -> None:
    ran = run(env, f"{spec.name} --help")
    assert ran.status == 0
    assert ran.out.startswith(f"usage: pcloudsh {spec.name}")
    assert "--json" in ran.out
    assert spec.summary and spec.summary in " ".join(ran.out.split())


def test_command_names_are_unique() -> None:
    names = [spec.name for _noun, spec in commands.all_commands()]
    assert len(names) == len(set(names))


def test_help_lists_every_command(env: Environment) -> None:
    ran = run(env, "help")
    assert ran.status == 0
    for _noun, spec in commands.all_commands():
        assert f"  {spec.name} " in ran.out
    assert run(env, "--help").out == ran.out
    assert run(env, "help deployable_import").out == run(env, "deployable_import --help").out


def test_help_for_an_unknown_command(env: Environment) -> None:
    ran = run(env, "help nosuch")
    assert ran.status == 2 and "unknown command 'nosuch'" in ran.err


def test_help_about_help(env: Environment) -> None:
    ran = run(env, "help help")
    assert ran.status == 0 and ran.out.startswith("usage: pcloudsh help [COMMAND]")


def test_json_help_lists_every_command_for_a_script(env: Environment) -> None:
    ran = run(env, "--json help")
    assert ran.status == 0 and ran.err == ""
    listed = json.loads(ran.out)
    names = [c["name"] for c in listed["commands"]]
    assert names == [spec.name for _noun, spec in commands.all_commands()]
    assert all(c["summary"] and c["group"] for c in listed["commands"])
    assert json.loads(run(env, "--json --help").out) == listed


def test_json_help_of_one_command_names_its_arguments(env: Environment) -> None:
    ran = run(env, "--json help deployable_start")
    assert ran.status == 0
    shown = json.loads(ran.out)
    assert shown["command"] == "deployable_start"
    assert shown["usage"].startswith("usage: pcloudsh deployable_start [NAME ...]")
    arguments = {a["name"]: a for a in shown["arguments"]}
    assert arguments["NAME"]["repeated"] and not arguments["NAME"]["flags"]
    assert arguments["--timeout"]["takes_value"] and not arguments["--wait"]["takes_value"]
    assert shown["help"] == run(env, "deployable_start --help").out
    simulate = json.loads(run(env, "--json help deployable_simulate").out)
    fail = next(a for a in simulate["arguments"] if a["name"] == "--fail")
    assert fail["repeated"] and fail["takes_value"]  # an option given again


def test_help_takes_one_command(env: Environment) -> None:
    ran = run(env, "--json help deployable_start deployable_stop")
    assert ran.status == 2 and ran.out == ""
    assert "help takes one command" in ran.err


@pytest.mark.parametrize(
    ("line", "missing"),
    [
        ("assembly_ssh shop", "ASSEMBLY"),
        ("resource_template_add t1", "AGENT"),
        ("assembly_resource_add", "ASSEMBLY/RESOURCE, TEMPLATE|AGENT"),
    ],
)
def test_a_missing_argument_error_names_only_what_is_required(
    env: Environment, line: str, missing: str
) -> None:
    """Trailing ``[X ...]`` arguments may be left out: never named as missing."""
    ran = run(env, line)
    assert ran.status == 2
    assert ran.err.splitlines()[-1].endswith(f"the following arguments are required: {missing}")


def test_version(env: Environment) -> None:
    ran = run(env, "--version")
    assert ran.status == 0 and ran.out.startswith("pcloudsh ")


def test_stop_names_the_deployables_that_keep_running(env: Environment, daemon: FakeDaemon) -> None:
    daemon.started_deployables = ["shop", "web"]
    stopped = json.loads(run(env, "--json stop").out)
    assert stopped["still_running"] == ["shop", "web"]
    daemon.running = True
    assert run(env, "stop").out == (
        "cped stopped (pid 4242); still running, adopted by the next cped: shop, web\n"
    )


def test_status_exit_codes(env: Environment, daemon: FakeDaemon) -> None:
    ran = run(env, "status")
    assert ran.status == 0
    assert ran.out == "cped is running (pid 4242, version 0.7.0, up 1 min 15 s)\n"
    daemon.running = False
    ran = run(env, "status")
    assert (ran.status, ran.out) == (3, "cped is not running\n")
    assert json.loads(run(env, "status --json").out)["running"] is False


def test_start_and_stop(env: Environment, daemon: FakeDaemon) -> None:
    daemon.running = False
    assert run(env, "start").out == "cped started (pid 4242)\n"
    assert run(env, "start").out == "cped is already running (pid 4242)\n"
    assert run(env, "stop").out == "cped stopped (pid 4242)\n"
    assert run(env, "stop").out == "cped was not running\n"
    assert json.loads(run(env, "--json start").out) == {
        "message": "cped started (pid 4242)",
        "pid": 4242,
        "started": True,
    }


def test_cped_not_reachable_exits_3(env: Environment) -> None:
    down = dataclasses.replace(env, connect=lambda _paths: DownCped())
    for line in ("deployable_list", "--json assembly_list", "deployable_start shop"):
        ran = run(down, line)
        assert ran.status == 3, line
        assert ran.out == ""
        assert ran.err == "pcloudsh: error: cped is not running (no answer on its socket)\n"


def test_bad_names_are_refused_before_cped_is_asked(env: Environment) -> None:
    down = dataclasses.replace(env, connect=lambda _paths: DownCped())
    assert run(down, "assembly_delete ../x").status == 2


def test_interrupt_exits_130(env: Environment, cped: InProcessCped) -> None:
    def interrupted() -> list[dict[str, object]]:
        raise KeyboardInterrupt

    cped.list_deployables = interrupted  # type: ignore[method-assign]
    ran = run(env, "deployable_list")
    assert (ran.status, ran.err) == (130, "pcloudsh: interrupted\n")


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidInput("x"), ExitCode.USAGE),
        (NotFound("x"), ExitCode.USAGE),
        (Conflict("x"), ExitCode.USAGE),
        (CpedUnreachable("x"), ExitCode.UNREACHABLE),
        (Unavailable("a guest cannot be reached"), ExitCode.FAILURE),
        (OperationTimeout("x"), ExitCode.FAILURE),
        (AgentError("x"), ExitCode.FAILURE),
        (KeyboardInterrupt(), ExitCode.INTERRUPTED),
        (RuntimeError("x"), ExitCode.FAILURE),
    ],
)
def test_exit_code_mapping(error: BaseException, status: ExitCode) -> None:
    assert exit_code_for(error) == status


def test_server_side_unavailable_is_a_failure_not_unreachable(
    env: Environment, shop: InProcessCped
) -> None:
    shop.supervisor.error = Unavailable("no DPE for deployable 'shop'")
    ran = run(env, "deployable_start shop")
    assert (ran.status, ran.err) == (1, "pcloudsh: error: no DPE for deployable 'shop'\n")


def test_no_color_in_the_environment_turns_colour_off() -> None:
    assert color_wanted({"NO_COLOR": "1"}) is False
    assert color_wanted({"NO_COLOR": ""}) is None  # set but empty: no effect (no-color.org)
    assert color_wanted({}) is None  # colour when stdout is a terminal
