"""The interactive shell driven in-process: same commands, help, completion of names."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
from pathlib import Path

import pytest

from foundation.paths import Paths
from pcloudsh import commands
from pcloudsh.environment import Environment
from pcloudsh.shell import PROMPT, PcloudShell, _json_after_the_command, run_shell
from pcloudsh.testing import run, shell_for
from tests.unit.inprocess import InProcessCped
from tests.unit.pcloudsh.fakes import DownCped


@pytest.fixture
def shell(env: Environment) -> PcloudShell:
    return shell_for(env)


def completions(shell: PcloudShell, line: str) -> list[str]:
    word = line.rsplit(" ", 1)[-1]
    found = shell.complete(word, line, len(line) - len(word), len(line))
    return [item.text for item in found.items]


def test_prompt_and_every_command_registered(shell: PcloudShell) -> None:
    assert shell.prompt == PROMPT == "pcloudsh# "
    visible = set(shell.get_visible_commands())
    for _noun, spec in commands.all_commands():
        assert spec.name in visible
    assert {"help", "history", "quit", "exit"} <= visible
    assert not {"shell", "edit", "run_pyscript"} & visible


def test_commands_print_like_one_shot(
    env: Environment, shell: PcloudShell, cped: InProcessCped
) -> None:
    ran = run(shell, "assembly_create web host")
    assert ran == ("assembly web created from host\n", "", 0)
    listed = run(shell, "assembly_list --json")
    assert listed.status == 0
    assert [a["name"] for a in json.loads(listed.out)] == ["web"]
    assert run(shell, "assembly_list") == run(env, "assembly_list")


def test_json_before_the_command_as_in_one_shot_use(
    env: Environment, shell: PcloudShell, shop: InProcessCped
) -> None:
    before = run(shell, "--json deployable_list")
    assert before == run(shell, "deployable_list --json") == run(env, "--json deployable_list")
    assert json.loads(before.out)[0]["name"] == "shop"
    assert _json_after_the_command("--json deployable_list | grep shop") == (
        "deployable_list --json | grep shop"
    )
    ran = run(shell, "--json")
    assert ran.status == 2 and "unknown command '--json'" in ran.err


def test_errors_and_statuses(shell: PcloudShell, shop: InProcessCped) -> None:
    ran = run(shell, "assembly_create web host")
    assert ran.status == 2 and ran.err == "pcloudsh: error: assembly 'web' already exists\n"
    ran = run(shell, "assembly_create 'we b' host")
    assert ran.status == 2 and "invalid assembly name 'we b'" in ran.err
    ran = run(shell, "assembly_create")
    assert ran.status == 2 and "the following arguments are required: NAME, JEOS" in ran.err
    ran = run(shell, "nosuch thing")
    assert ran.status == 2 and ran.err == "pcloudsh: error: unknown command 'nosuch' (try help)\n"
    ran = run(shell, "deployable_lst")  # as in one-shot use
    assert ran.status == 2
    assert (
        ran.err
        == "pcloudsh: error: unknown command 'deployable_lst' (did you mean deployable_list?)\n"
    )
    assert run(shell, "deployable_list").status == 0


def test_empty_line_does_nothing(shell: PcloudShell, shop: InProcessCped) -> None:
    run(shell, "assembly_create web host")  # fails: status 2
    before = shop.tables()
    assert run(shell, "") == ("", "", 0)
    assert shop.tables() == before


def test_help(shell: PcloudShell) -> None:
    listing = run(shell, "help").out
    for category in ("Assemblies", "Deployables", "Escalation", "Events", "Daemon (cped)", "Shell"):
        assert category in listing
    detail = run(shell, "help assembly_resource_add").out
    assert "Add a resource to an assembly" in detail
    assert "@ASSEMBLY:ipaddress" in " ".join(detail.split())


def test_quit_exit_and_end_of_input(env: Environment) -> None:
    for script in ("quit\nassembly_list\n", "exit\nassembly_list\n", "assembly_list\n"):
        out = io.StringIO()
        shell = PcloudShell(
            dataclasses.replace(env, stdin=io.StringIO(script), stdout=out), history=False
        )
        assert shell.cmdloop() == 0
        assert out.getvalue().startswith("pcloudsh ")
        assert out.getvalue().count("no assemblies") == (
            0 if "quit" in script or "exit" in script else 1
        )


def test_completion_of_existing_names(shell: PcloudShell, shop: InProcessCped) -> None:
    assert completions(shell, "assembly_delete ") == ["db", "web"]
    assert completions(shell, "assembly_delete w") == ["web"]
    assert completions(shell, "assembly_create new ") == ["host"]
    assert completions(shell, "deployable_start ") == ["shop"]
    shipped = ["deltacloud-core", "deltacloud-ec2-us-east-1", "deltacloud-ec2-us-west-1"]
    shipped += ["deltacloud-mock", "dummy"]  # the resource templates cped ships
    assert completions(shell, "assembly_resource_add r d") == shipped
    assert completions(shell, "assembly_resource_add ") == ["db/", "web/"]
    assert completions(shell, "deployable_constraint_add shop ") == ["db/pg", "web/www"]
    assert completions(shell, "events --deployable ") == ["shop"]


def test_completion_of_a_resource_uses_the_assembly_on_the_line(
    shell: PcloudShell, shop: InProcessCped
) -> None:
    assert completions(shell, "assembly_resource_remove ") == ["db/pg", "web/www"]
    assert completions(shell, "escalation_resource_set ") == ["db/pg", "web/www"]
    run(shell, "assembly_resource_add db/extra dummy")
    assert completions(shell, "assembly_resource_remove --json db/e") == ["db/extra"]


def test_completion_of_names_within_the_deployable_on_the_line(
    shell: PcloudShell, shop: InProcessCped
) -> None:
    for line in ("assembly_create n1 host", "deployable_assembly_add shop n1"):
        run(shell, line)
    run(shell, "deployable_service_add shop cache dummy --on n1:100,db")
    assert completions(shell, "deployable_assembly_remove shop ") == ["db", "n1", "web"]
    assert completions(shell, "deployable_service_set shop ") == ["cache"]
    assert completions(shell, "deployable_service_move shop cache ") == ["db", "n1"]
    assert completions(shell, "deployable_cleanup shop db/") == ["db/cache", "db/pg"]


def test_completion_without_cped_offers_nothing(env: Environment) -> None:
    shell = shell_for(dataclasses.replace(env, connect=lambda _paths: DownCped()))
    assert completions(shell, "assembly_delete ") == []
    assert completions(shell, "deployable_") != []  # command names still complete


def test_command_names_complete(shell: PcloudShell) -> None:
    assert completions(shell, "deployable_constraint_") == [
        "deployable_constraint_add",
        "deployable_constraint_list",
        "deployable_constraint_remove",
    ]


def test_ctrl_c_ends_a_command_not_the_shell(shell: PcloudShell, cped: InProcessCped) -> None:
    ran = run(shell, "events --follow")  # the fake stream ends with KeyboardInterrupt
    assert (ran.status, ran.err) == (130, "")  # the normal end of --follow: no message

    def interrupted() -> list[dict[str, object]]:
        raise KeyboardInterrupt

    cped.list_deployables = interrupted  # type: ignore[method-assign]
    assert run(shell, "deployable_list") == ("", "pcloudsh: interrupted\n", 130)
    del cped.list_deployables
    assert run(shell, "deployable_list").status == 0


def test_output_redirected_to_a_file_goes_there(
    shell: PcloudShell, shop: InProcessCped, tmp_path: Path
) -> None:
    target = tmp_path / "list.txt"
    ran = run(shell, f"deployable_list > {target}")
    assert (ran.out, ran.err, ran.status) == ("", "", 0)
    assert "shop" in target.read_text()
    run(shell, f"assembly_list >> {target}")
    assert "web" in target.read_text() and "shop" in target.read_text()


def test_the_banner_says_live_events_are_off_when_they_are(env: Environment) -> None:
    out = io.StringIO()
    shell = PcloudShell(
        dataclasses.replace(env, stdin=io.StringIO("events_live\n"), stdout=out), history=False
    )  # stdin is no terminal: live events start off
    assert shell.cmdloop() == 0
    assert 'Live events are off ("events_live on" shows' in out.getvalue()
    assert "appear above the prompt (" not in out.getvalue()
    assert "live events: off" in out.getvalue()


def test_the_banner_says_new_events_appear_when_live_events_start_on(env: Environment) -> None:
    shell = PcloudShell(env, history=False, live_events=True)
    assert 'New events appear above the prompt ("events_live off" hides them)' in shell.intro


class TypedAtATerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run_shell_on(env: Environment, tmp_path: Path, stdin: io.StringIO) -> int:
    """run_shell as ``pcloudsh`` without arguments, its input from ``stdin``."""
    paths = Paths(tmp_path / "etc", tmp_path / "state", tmp_path / "run")
    err = io.StringIO()
    env = dataclasses.replace(env, paths=paths, stdin=stdin, stdout=io.StringIO(), stderr=err)
    with contextlib.redirect_stderr(err):  # cmd2's own messages
        return run_shell(env)


@pytest.mark.parametrize(
    ("script", "status"),
    [
        ("assembly_create web host\nassembly_list\n", 0),
        ('assembly_create "a b" host\nquit\n', 2),
        ('assembly_create "a b" host\nassembly_list\n', 2),  # a later success hides nothing
        ('assembly_create "a b\nassembly_list\n', 2),  # no closing quote: nothing ran
        ("assembly_create web host\nassembly_create web host\nnosuch\nexit\n", 2),
    ],
)
def test_commands_piped_in_end_with_the_last_failures_status(
    env: Environment, tmp_path: Path, script: str, status: int
) -> None:
    assert run_shell_on(env, tmp_path, io.StringIO(script)) == status


def test_piped_in_the_last_failure_decides_a_failed_operation_then_bad_usage(
    env: Environment, cped: InProcessCped, tmp_path: Path
) -> None:
    from foundation.errors import StoreError

    cped.answer("create_assembly", answer=StoreError("disk full"))
    script = 'assembly_create "a b" host\nassembly_create web host\nassembly_list\n'
    assert run_shell_on(env, tmp_path, io.StringIO(script)) == 1


def test_piped_in_without_cped_ends_with_status_3(env: Environment, tmp_path: Path) -> None:
    down = dataclasses.replace(env, connect=lambda _paths: DownCped())
    assert run_shell_on(down, tmp_path, io.StringIO("assembly_list\n")) == 3


def test_at_a_terminal_a_failed_command_does_not_decide_the_shells_status(
    env: Environment, tmp_path: Path
) -> None:
    typed = TypedAtATerminal('assembly_create "a b" host\nquit\n')
    assert run_shell_on(env, tmp_path, typed) == 0


def test_redirection_in_a_value_is_redirection_unless_the_value_is_quoted(
    shell: PcloudShell, shop: InProcessCped, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run(shell, "assembly_resource_add web/r1 dummy state=/tmp/a>b").status == 0
    assert "resource r1 (" in (tmp_path / "b").read_text()  # the output went to b
    assert run(shell, "assembly_resource_add web/r2 dummy 'state=/tmp/a>c'").status == 0
    assert not (tmp_path / "c").exists()
    assert run(shell, "assembly_resource_add web/r3 dummy state='/tmp/a>d'").status == 0
    assert (tmp_path / "d'").exists()  # a quote inside the word does not protect it
    states = {r["name"]: r["parameters"]["state"] for r in shop.get_assembly("web")["resources"]}
    assert (states["r1"], states["r2"]) == ("/tmp/a", "/tmp/a>c")
