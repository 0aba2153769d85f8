"""assembly_ssh: the ssh command line (pinned host key, the assembly's key), exec or run."""

from __future__ import annotations

import dataclasses
import io
import json
import shlex
from collections.abc import Sequence
from pathlib import Path

import pytest

from foundation.errors import Conflict
from foundation.paths import Paths
from foundation.runtime_kinds import ASSEMBLY, INSTANCE
from pcloudsh.environment import Environment
from pcloudsh.oneshot import run as run_oneshot
from pcloudsh.testing import run, shell_for
from tests.unit.inprocess import InProcessCped

NOW = 1_700_000_000.0
HOST_KEY = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDpinned root@pcmk-cloud"


class Programs:
    def __init__(self, status: int = 0) -> None:
        self.execed: list[list[str]] = []
        self.ran: list[list[str]] = []
        self.status = status

    def exec(self, argv: Sequence[str]) -> None:
        self.execed.append(list(argv))

    def run(self, argv: Sequence[str]) -> int:
        self.ran.append(list(argv))
        return self.status


@pytest.fixture
def programs() -> Programs:
    return Programs(status=3)


def record_running(cped: InProcessCped) -> None:
    """What shop's DPE records once its instances run: where SSH reaches each."""
    for port, assembly in enumerate(("db", "web"), start=2200):
        cped.store.put_runtime("shop", ASSEMBLY, assembly, {"state": "running"})
        instance = {
            "instance_id": f"{assembly}-0001",
            "address": "127.0.0.1",
            "ssh_host": "127.0.0.1",
            "ssh_port": port,
            "username": "root",
            "created_at": NOW - 330,
        }
        cped.store.put_runtime("shop", INSTANCE, assembly, instance)


@pytest.fixture
def ssh_env(
    env: Environment, shop: InProcessCped, programs: Programs, tmp_path: Path
) -> Environment:
    record_running(shop)
    paths = Paths(tmp_path / "etc", tmp_path / "state", tmp_path / "run")
    paths.keys_dir.mkdir(parents=True)
    for assembly in ("web", "db"):
        (paths.keys_dir / assembly).write_text("PRIVATE\n")
        (paths.keys_dir / f"{assembly}.host.pub").write_text(HOST_KEY + "\n")
    return dataclasses.replace(
        env, paths=paths, exec_program=programs.exec, run_program=programs.run
    )


def options(argv: list[str]) -> dict[str, str]:
    pairs = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-o"]
    return dict(pair.split("=", 1) for pair in pairs)


def test_one_shot_becomes_ssh_with_the_pinned_host_key(
    ssh_env: Environment, programs: Programs
) -> None:
    ran = run(ssh_env, "assembly_ssh shop web")
    assert ran == ("", "", 0)
    [argv] = programs.execed
    assert argv[:7] == ["ssh", "-F", "none", "-p", "2201", "-l", "root"]
    assert argv[-2:] == ["--", "127.0.0.1"]
    found = options(argv)
    assert found["IdentityFile"] == str(ssh_env.paths.keys_dir / "web")
    assert found["IdentitiesOnly"] == "yes" and found["IdentityAgent"] == "none"
    assert found["StrictHostKeyChecking"] == "yes"
    assert found["UserKnownHostsFile"] == found["GlobalKnownHostsFile"] == "/dev/null"
    echo, line = found["KnownHostsCommand"].split(" ", 1)
    assert echo.startswith("/") and echo.endswith("echo")
    assert line == "[127.0.0.1]:2201 ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDpinned"
    assert "BatchMode" not in found  # a login may ask nothing, but it is a person's session
    assert programs.ran == []


def test_a_command_runs_in_batch_mode(ssh_env: Environment, programs: Programs) -> None:
    assert run(ssh_env, "assembly_ssh shop db -- ls -l '/etc/a b'").status == 0
    [argv] = programs.execed
    assert argv[-3:] == ["--", "127.0.0.1", "ls -l '/etc/a b'"]  # quoted for the remote shell
    assert options(argv)["BatchMode"] == "yes"
    assert argv[argv.index("-p") + 1] == "2200"


def test_one_word_is_a_command_line_for_the_remote_shell(
    ssh_env: Environment, programs: Programs
) -> None:
    assert run(ssh_env, "assembly_ssh shop db -- 'pgrep sshd | wc -l; echo $HOME'").status == 0
    assert programs.execed[0][-1] == "pgrep sshd | wc -l; echo $HOME"
    run(ssh_env, "assembly_ssh shop db -- pkill -f 'http.server 18080'")
    assert programs.execed[1][-1] == "pkill -f 'http.server 18080'"


def test_the_shell_runs_ssh_and_keeps_its_status(ssh_env: Environment, programs: Programs) -> None:
    shell = shell_for(ssh_env)
    ran = run(shell, "assembly_ssh shop web -- exit 3")
    assert ran.status == 3
    assert programs.ran[0][-2:] == ["127.0.0.1", "exit 3"]
    assert programs.execed == []


def test_json_tells_how_to_reach_the_instance(ssh_env: Environment, programs: Programs) -> None:
    data = json.loads(run(ssh_env, "assembly_ssh shop web --json").out)
    assert {k: data[k] for k in ("deployable", "assembly", "instance", "host", "port")} == {
        "deployable": "shop",
        "assembly": "web",
        "instance": "web-0001",
        "host": "127.0.0.1",
        "port": 2201,
    }
    assert data["username"] == "root"
    assert data["known_host"].startswith("[127.0.0.1]:2201 ssh-rsa ")
    assert data["argv"][0] == "ssh" and programs.execed == []
    assert run(ssh_env, "--json assembly_ssh shop web -- uptime").status == 0
    assert programs.execed == []


def test_port_22_of_the_address_when_cped_gives_no_ssh_port(
    ssh_env: Environment, shop: InProcessCped, programs: Programs
) -> None:
    status = {
        "name": "shop",
        "state": "running",
        "assemblies": [
            {"name": "web", "state": "running", "instance": "i-9", "address": "10.1.2.3"}
        ],
    }
    shop.answer("deployable_status", "shop", answer=status)
    run(ssh_env, "assembly_ssh shop web")
    argv = programs.execed[0]
    assert argv[argv.index("-p") + 1] == "22" and argv[-1] == "10.1.2.3"
    assert options(argv)["KnownHostsCommand"].endswith(" 10.1.2.3 ssh-rsa " + HOST_KEY.split()[1])


@pytest.mark.parametrize(
    ("line", "status", "message"),
    [
        ("assembly_ssh nosuch web", 2, "no such deployable: 'nosuch'"),
        ("assembly_ssh shop nosuch", 2, "deployable 'shop' has no assembly 'nosuch'"),
        ("assembly_ssh shop ../web", 2, "invalid assembly name '../web'"),
        ("assembly_ssh 'sh op' web", 2, "invalid deployable name 'sh op'"),
        ("assembly_ssh shop web ls -l", 2, "unrecognized arguments: -l"),
        ("assembly_ssh shop", 2, "the following arguments are required: ASSEMBLY"),
    ],
)
def test_bad_names_and_unknown_ones(
    ssh_env: Environment, programs: Programs, line: str, status: int, message: str
) -> None:
    ran = run(ssh_env, line)
    assert (ran.status, ran.out) == (status, "")
    assert message in ran.err and "Traceback" not in ran.err
    assert programs.execed == []


def test_an_assembly_without_a_running_instance(
    ssh_env: Environment, shop: InProcessCped, programs: Programs
) -> None:
    status = {
        "name": "shop",
        "state": "recovering",
        "assemblies": [
            {"name": "web", "state": "fencing", "instance": "web-1", "address": "127.0.0.1"},
            {"name": "db", "state": "stopped", "instance": None},
        ],
    }
    shop.answer("deployable_status", "shop", answer=status)
    ran = run(ssh_env, "assembly_ssh shop web")
    assert ran.status == 1
    assert ran.err == (
        "pcloudsh: error: assembly 'web' of deployable 'shop' has no running instance "
        "(it is fencing)\n"
    )
    assert "(it is stopped)" in run(ssh_env, "assembly_ssh shop db").err
    shop.answer("deployable_status", "shop", answer=Conflict("deployable 'shop' is not started"))
    ran = run(ssh_env, "assembly_ssh shop web")
    assert (ran.status, ran.err) == (1, "pcloudsh: error: deployable 'shop' is not started\n")
    assert programs.execed == []


def test_missing_keys_are_named(ssh_env: Environment, programs: Programs) -> None:
    (ssh_env.paths.keys_dir / "web.host.pub").unlink()
    ran = run(ssh_env, "assembly_ssh shop web")
    assert ran.status == 1
    assert "assembly 'web' has no web.host.pub in " in ran.err
    assert programs.execed == []


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _ssh_argv(env: Environment, programs: Programs, line: str, **streams: io.StringIO) -> list[str]:
    """The ssh command line of ``line``, run with these standard streams."""
    plain = {"stdin": io.StringIO(), "stdout": io.StringIO(), "stderr": io.StringIO()}
    assert run_oneshot(shlex.split(line), dataclasses.replace(env, **(plain | streams))) == 0
    return programs.execed[-1]


def test_on_a_terminal_a_command_gets_one_there_so_ctrl_c_stops_it(
    ssh_env: Environment, programs: Programs
) -> None:
    terminal = {"stdin": _Terminal(), "stdout": _Terminal()}
    assert "-t" in _ssh_argv(ssh_env, programs, "assembly_ssh shop db -- sleep 30", **terminal)
    # its output redirected: no CR before each newline in what it writes
    piped = _ssh_argv(ssh_env, programs, "assembly_ssh shop db -- cat /x", stdin=_Terminal())
    assert "-t" not in piped
    # a login: ssh gives it a terminal itself
    assert "-t" not in _ssh_argv(ssh_env, programs, "assembly_ssh shop db", **terminal)
