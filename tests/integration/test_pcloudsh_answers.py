"""What pcloudsh answers at the edges of its commands, with real pcloudsh processes.

- ``deployable_start --wait`` on a deployable with a resource whose agent never
  starts fails, naming that resource (``not_running`` in --json); the stopped
  deployable's status shows its monitoring mode as set, not as running.
- A ``--timeout`` of 0 is refused by every command that takes one, naming the option
  and the allowed range.
- ``pcloudsh start`` waits longer than a loaded host's slow start, and when it gives
  up it says what it launched and where its log is (cped is slowed by a
  ``sitecustomize`` that delays binding its socket).
- ``--version`` takes no arguments, and says it in JSON with ``--json``.
- The interactive shell reads ``my\\ dep`` as one word, as the one-shot form does,
  and refuses the name by name.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from foundation import __version__
from tests.integration.conftest import CpedProcess
from tests.integration.test_pcloudsh_runtime import Runtime, _leave_nothing_running
from tests.integration.test_pcloudsh_session import (
    COMMAND_TIMEOUT,
    Home,
    alive,
    pcloudsh_command,
    wait_gone,
)

pytestmark = pytest.mark.integration

NEVER_STARTS = [
    "resource_template_add failer ocf:heartbeat:anything binfile=/bin/false",
    "assembly_create web host",
    "assembly_resource_add web/ok dummy",
    "assembly_resource_add web/bad failer",
    "deployable_create shop",
    "deployable_assembly_add shop web",
]
RANGE = "expected a duration more than 0 and at most 365 days"
# Delays cped's bind of its API socket: a host too loaded to start cped in seconds.
SLOW_BIND = """
import os, socket, time
_path = os.environ.get("SLOW_BIND_PATH")
if _path:
    _bind = socket.socket.bind
    def bind(self, address):
        if address == _path:
            time.sleep(float(os.environ["SLOW_BIND_SECONDS"]))
        return _bind(self, address)
    socket.socket.bind = bind
"""


@pytest.fixture
def shell(cped: CpedProcess) -> Iterator[Runtime]:
    runtime = Runtime(cped.paths)
    for line in NEVER_STARTS:
        runtime.ok(line)
    try:
        yield runtime
    finally:
        _leave_nothing_running(runtime, cped.paths)


def test_start_wait_fails_naming_the_resources_that_do_not_run(shell: Runtime) -> None:
    started = shell.run("deployable_start", "shop", "--wait")
    assert started.returncode == 1, (started.stdout, started.stderr)
    assert "1 cannot start; deployable_status shop shows why" in started.stdout
    assert "pcloudsh: error: deployable shop: not every resource runs: web/bad (" in (
        started.stderr
    )
    assert "web/ok" not in started.stderr and "Traceback" not in started.stderr
    again = shell.run("--json", "deployable_start", "shop", "--wait")
    assert again.returncode == 1
    answer = json.loads(again.stdout)
    assert [(r["assembly"], r["resource"]) for r in answer["not_running"]] == [("web", "bad")]

    shell.ok("deployable_stop shop --wait")
    status = shell.ok("deployable_status shop").splitlines()
    assert status[0].startswith("deployable shop: stopped (no DPE, monitoring active once started")
    assert shell.status()["monitoring"] == "active"  # --json: the setting, as before


@pytest.mark.parametrize(
    "command",
    [
        "deployable_start shop --wait --timeout 0",
        "deployable_stop shop --wait --timeout 0s",
        "events --follow --timeout 0",
        "start --timeout 0",
    ],
)
def test_a_zero_timeout_is_refused_naming_the_option_and_the_range(
    shell: Runtime, command: str
) -> None:
    refused = shell.run(*command.split())
    assert refused.returncode == 2, (refused.stdout, refused.stderr)
    assert refused.stderr.startswith("pcloudsh: error: invalid --timeout '0")
    assert RANGE in refused.stderr


@pytest.fixture
def fresh_home() -> Iterator[Home]:
    """A new home with no cped; one started there is stopped at the end."""
    made = Home()
    try:
        yield made
    finally:
        made.cleanup()


@pytest.fixture
def slow_home(fresh_home: Home, tmp_path: Path) -> Home:
    """A home whose cped binds its socket only after a delay the test chooses."""
    (tmp_path / "sitecustomize.py").write_text(SLOW_BIND)
    env = fresh_home.env
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env["PYTHONPATH"]])
    env["SLOW_BIND_PATH"] = str(fresh_home.paths.socket)
    return fresh_home


def test_start_gives_up_saying_what_it_launched_and_where_its_log_is(slow_home: Home) -> None:
    # 5 s: room to detach on a loaded host; the socket's bind comes 15 s after the start
    slow_home.env["SLOW_BIND_SECONDS"] = "15"
    began = time.monotonic()
    gave_up = slow_home.run("start --timeout 5s")
    assert time.monotonic() - began < COMMAND_TIMEOUT
    assert gave_up.returncode == 1, gave_up.stderr
    said = gave_up.stderr
    launched = re.match(r"pcloudsh: error: cped \(pid (\d+)\) did not answer on ", said)
    assert launched, said
    pid = int(launched[1])  # its pidfile may not be written yet on a loaded host
    assert alive(pid)
    assert "within 5 s and may still be starting" in said and "`pcloudsh status`" in said
    assert str(slow_home.paths.log_dir / "cped.log") in said
    deadline = time.monotonic() + COMMAND_TIMEOUT
    while slow_home.run("status").returncode != 0:  # it goes on starting
        assert time.monotonic() < deadline, "cped never answered"
        time.sleep(0.2)
    assert slow_home.cped_pid() == pid
    slow_home.ok("stop")
    assert wait_gone(pid, 10.0)


def test_start_waits_for_a_cped_slower_than_ten_seconds(slow_home: Home) -> None:
    slow_home.env["SLOW_BIND_SECONDS"] = "11"
    started = slow_home.run("start")
    assert started.returncode == 0, started.stderr
    assert started.stdout == f"cped started (pid {slow_home.cped_pid()})\n"
    slow_home.ok("stop")


def test_version_takes_no_arguments(fresh_home: Home) -> None:
    refused = fresh_home.run("--version extra")
    assert (refused.returncode, refused.stdout) == (2, "")
    assert "pcloudsh: error: --version takes no arguments (got 'extra')" in refused.stderr
    assert fresh_home.run("--version").returncode == 0


@pytest.mark.parametrize("words", ["--json --version", "--version --json"])
def test_the_version_is_json_when_json_is_asked(fresh_home: Home, words: str) -> None:
    shown = fresh_home.run(words)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == {"program": "pcloudsh", "version": __version__}


def test_the_shell_reads_an_escaped_space_as_the_one_shot_form_does(shell: Runtime) -> None:
    refusal = "pcloudsh: error: invalid deployable name 'my dep': use 1 to 63 letters"
    one_shot = shell.run("deployable_create", "my dep")  # `my\ dep` typed in a POSIX shell
    assert one_shot.returncode == 2 and one_shot.stderr.startswith(refusal)
    typed = "deployable_create my\\ dep\ndeployable_list --json\n"
    interactive = subprocess.run(
        pcloudsh_command(),
        input=typed,
        capture_output=True,
        text=True,
        env=shell.env,
        timeout=COMMAND_TIMEOUT,
    )
    assert interactive.stderr.startswith(refusal), interactive.stderr
    assert "'my\\\\'" not in interactive.stderr
    listed = json.loads(interactive.stdout[interactive.stdout.index("[") :])
    assert [row["name"] for row in listed] == ["shop"]
