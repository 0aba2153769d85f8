"""The foundation acceptance scenario with real pcloudsh processes and a real cped.

``PCLOUD_HOME`` is a fresh temporary directory; ``pcloudsh start`` starts cped
there, the catalog is built one command per process, exported, imported back,
attacked with bad input, and ``pcloudsh stop`` leaves no cped behind.  The same
session is then typed into an interactive pcloudsh through a pseudo-terminal.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from foundation.paths import Paths, resolve

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
COMMAND_TIMEOUT = 30.0
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\x1b[=>]|\r")

SESSION = [
    "assembly_create web host",
    "assembly_create db host",
    "assembly_resource_add pg dummy db",
    "assembly_resource_add www dummy web fake=@db:ipaddress",
    "deployable_create shop",
    "deployable_assembly_add shop db",
    "deployable_assembly_add shop web",  # after db: web's resource refers to db
    "deployable_constraint_add shop db/pg web/www",
    "escalation_resource_set www web 3 60",
    "escalation_assembly_set web 2 10m",
    "escalation_deployable_set shop 2 1h",
]

BAD_INPUT = [
    "assembly_create web host",  # duplicate
    "assembly_create 'we b' host",
    "assembly_create ../etc host",
    "assembly_create x/y host",
    "assembly_create new nosuch-jeos",
    "assembly_resource_add r nosuch-template web",
    "assembly_resource_add www dummy web",  # duplicate resource
    "assembly_resource_add r dummy web x=@db:macaddress",
    "deployable_create shop",
    "deployable_create other cloud9",
    "deployable_assembly_add shop nosuch",
    "deployable_assembly_add shop web",
    "deployable_constraint_add shop web/www db/pg",  # a cycle
    "deployable_constraint_add shop web db/pg",
    "escalation_resource_set www web three 60",
    "escalation_assembly_set web 3 soon",
    "escalation_deployable_set nosuch 3 60",
    "deployable_export nosuch",
    "assembly_create",
    "no_such_command",
]


def pcloudsh_command() -> list[str]:
    script = Path(sys.executable).with_name("pcloudsh")
    return [str(script)] if script.exists() else [sys.executable, "-m", "pcloudsh"]


class Home:
    """A temporary PCLOUD_HOME and the pcloudsh processes run in it."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pc-", dir="/tmp"))
        self.paths: Paths = resolve({"PCLOUD_HOME": str(self.dir)})
        self.env = dict(os.environ, PCLOUD_HOME=str(self.dir))
        self.env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(REPO), os.environ.get("PYTHONPATH")])
        )
        self.env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])

    def run(self, line: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        import shlex

        return subprocess.run(
            [*pcloudsh_command(), *shlex.split(line)],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=COMMAND_TIMEOUT,
        )

    def ok(self, line: str, stdin: str | None = None) -> str:
        done = self.run(line, stdin)
        assert done.returncode == 0, (line, done.stdout, done.stderr)
        return done.stdout

    def cped_pid(self) -> int | None:
        try:
            return int(self.paths.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def cleanup(self) -> None:
        pid = self.cped_pid()
        if pid is not None and alive(pid):
            os.kill(pid, signal.SIGTERM)
            wait_gone(pid, 10.0)
        shutil.rmtree(self.dir, ignore_errors=True)


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_gone(pid: int, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def home() -> Iterator[Home]:
    made = Home()
    try:
        yield made
    finally:
        made.cleanup()


def test_foundation_scenario_with_one_shot_processes(home: Home) -> None:
    assert home.run("status").returncode == 3

    home.ok("start")
    assert home.run("status").returncode == 0
    pid = home.cped_pid()
    assert pid is not None and alive(pid)

    for line in SESSION:
        home.ok(line)
    for assembly in ("web", "db"):
        assert (home.paths.keys_dir / assembly).is_file()
        assert (home.paths.keys_dir / f"{assembly}.host.pub").is_file()

    exported = json.loads(home.ok("--json deployable_export shop"))
    assert [a["name"] for a in exported["assemblies"]] == ["db", "web"]
    assert exported["constraints"] == [{"first": "db/pg", "then": "web/www"}]
    assert exported["escalation"] == {"failures": 2, "period": 3600}
    web = exported["assemblies"][1]
    assert web["escalation"] == {"failures": 2, "period": 600}
    assert web["resources"][0]["escalation"] == {"failures": 3, "period": 60}
    assert web["resources"][0]["parameters"]["fake"] == {"ref": "db:ipaddress"}

    # the export imports back into an identical document
    document = home.dir / "shop.json"
    document.write_text(json.dumps(exported))
    home.ok("deployable_delete shop")
    assert json.loads(home.ok("--json deployable_list")) == []
    home.ok(f"deployable_import {document}")
    assert json.loads(home.ok("--json deployable_export shop")) == exported
    xml = home.ok("deployable_export shop --format xml")
    home.ok("deployable_import - --format xml", stdin=xml)
    assert json.loads(home.ok("deployable_export shop --json")) == exported

    # bad input: exit 2, one clear error, nothing changed
    for line in BAD_INPUT:
        done = home.run(line)
        assert done.returncode == 2, (line, done.stdout, done.stderr)
        assert done.stdout == "", line
        assert "error: " in done.stderr and "Traceback" not in done.stderr, line
    malformed = home.run("deployable_import -", stdin='{"name": "shop", "assemblies": [')
    assert malformed.returncode == 2 and "not valid JSON" in malformed.stderr
    negative = home.run("escalation_assembly_set web 3 -1s")  # a value, not an unknown option
    assert negative.returncode == 2 and "invalid PERIOD '-1s'" in negative.stderr
    empty = home.run("deployable_import -", stdin="\n")
    assert empty.returncode == 2 and "standard input: empty: expected a deployable" in empty.stderr
    secret = "$6$c2FsdA$aGFzaGVkIHNlY3JldA"
    shadow = home.run("deployable_import -", stdin=f"root:{secret}:19000:0:99999:7:::\n")
    assert shadow.returncode == 2 and "not a field name (not shown)" in shadow.stderr
    assert secret not in shadow.stderr and "root" not in shadow.stderr  # never echoed
    assert json.loads(home.ok("--json deployable_export shop")) == exported

    # lifecycle requests name what they act on (running deployables: test_pcloudsh_runtime)
    unknown = home.run("deployable_start nosuch")
    assert unknown.returncode == 2 and "'nosuch'" in unknown.stderr

    home.ok("stop")
    assert wait_gone(pid, 10.0), "cped still running after pcloudsh stop"
    assert not home.paths.pidfile.exists()
    assert home.run("status").returncode == 3
    assert home.run("deployable_list").returncode == 3


class Terminal:
    """An interactive pcloudsh on a pseudo-terminal."""

    def __init__(self, home: Home) -> None:
        master, slave = os.openpty()
        env = dict(home.env, TERM="xterm", PROMPT_TOOLKIT_NO_CPR="1", COLUMNS="120", LINES="50")
        self.master = master
        self.proc = subprocess.Popen(
            pcloudsh_command(),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
        )
        os.close(slave)
        self.buffer = b""

    def screen(self) -> str:
        return ANSI.sub("", self.buffer.decode(errors="replace"))

    def read_until(self, done: re.Pattern[str], timeout: float = COMMAND_TIMEOUT) -> str:
        end = time.monotonic() + timeout
        while not done.search(self.screen()):
            if time.monotonic() > end:
                raise TimeoutError(f"waiting for {done.pattern!r}; the screen: {self.screen()!r}")
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    self.buffer += os.read(self.master, 65536)
                except OSError:  # the shell closed the terminal
                    break
        return self.screen()

    def type(self, line: str) -> str:
        """Type a line and return what it printed before the next prompt."""
        self.buffer = b""
        os.write(self.master, line.encode() + b"\r")
        screen = self.read_until(re.compile(r"\n(.*\n)*.*pcloudsh#\s*$"))
        after_echo = screen.partition("\n")[2]
        return after_echo[: after_echo.rfind("pcloudsh#")]

    def complete(self, partial: str, expected: str) -> str:
        """Type ``partial`` and Tab; wait for ``expected`` on the screen, then clear the line."""
        self.buffer = b""
        os.write(self.master, partial.encode() + b"\t")
        try:
            return self.read_until(re.compile(re.escape(expected)))
        finally:
            os.write(self.master, b"\x15")  # Ctrl-U: erase the line

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        os.close(self.master)


def test_the_same_session_interactively(home: Home) -> None:
    home.ok("start")
    terminal = Terminal(home)
    try:
        banner = terminal.read_until(re.compile(r"pcloudsh#\s*$"))
        assert "pcloudsh" in banner and "help" in banner
        assert terminal.type("status").startswith("cped is running")
        for line in SESSION:
            printed = terminal.type(line)
            assert "error" not in printed, (line, printed)
        listing = terminal.type("deployable_assembly_list shop")
        assert re.search(r"^web\s+host\s+1\s+2 failures in 600 s", listing, re.MULTILINE), listing
        exported = json.loads(terminal.type("deployable_export shop --json"))
        assert exported["constraints"] == [{"first": "db/pg", "then": "web/www"}]
        assert "assembly 'web' already exists" in terminal.type("assembly_create web host")
        assert "invalid FAILURES 'x'" in terminal.type("escalation_assembly_set web x 60")
        assert terminal.type("") == ""
        assert "Create an assembly from a JEOS image" in terminal.type("help assembly_create")
        terminal.complete("assembly_delete w", "eb")  # Tab completes the existing name "web"
        menu = terminal.complete("deployable_constraint_add shop ", "web/www")
        assert "db/pg" in menu
        terminal.type("")
        os.write(terminal.master, b"quit\r")
        assert terminal.proc.wait(COMMAND_TIMEOUT) == 0
    finally:
        terminal.close()
    assert json.loads(home.ok("--json deployable_export shop")) == exported
    assert (home.paths.state_dir / "pcloudsh_history").is_file()
    home.ok("stop")


def test_commands_piped_into_the_shell_end_with_the_last_failures_status(home: Home) -> None:
    assert home.run("", stdin="status\nquit\n").returncode == 3  # no cped yet
    home.ok("start")
    assert home.run("", stdin="assembly_create web host\nassembly_list\n").returncode == 0
    failed = home.run("", stdin='assembly_create "a b" host\nassembly_list\nquit\n')
    assert failed.returncode == 2, (failed.stdout, failed.stderr)
    assert "invalid assembly name 'a b'" in failed.stderr and "web" in failed.stdout
    exported = home.run("", stdin="deployable_create shop\ndeployable_export shop -o -\n")
    assert exported.returncode == 0 and '"name": "shop"' in exported.stdout
    assert not (home.dir / "-").exists() and not Path("-").exists()
    home.ok("stop")


ONE_SHOT_PROBE = (
    "import sys\n"
    "from pcloudsh.main import main\n"
    "status = main(sys.argv[1:])\n"
    "heavy = ('cmd2', 'prompt_toolkit', 'aiohttp', 'rich', 'pydantic')\n"
    "print(status, sorted(m for m in heavy if m in sys.modules), file=sys.stderr)\n"
)


def heavy_modules_loaded(argv: list[str], env: dict[str, str]) -> tuple[str, str]:
    """Run one pcloudsh command in-process; its exit status and the heavy modules it loaded."""
    done = subprocess.run(
        [sys.executable, "-c", ONE_SHOT_PROBE, *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=COMMAND_TIMEOUT,
    )
    status, _, heavy = done.stderr.splitlines()[-1].partition(" ")
    return status, heavy


def test_one_shot_path_loads_neither_cmd2_nor_aiohttp_nor_pydantic(home: Home) -> None:
    for line in (
        ["--json", "deployable_list"],
        ["deployable_create", "probe"],
        ["deployable_constraint_list", "probe"],
        ["--json", "status"],
        ["help"],
        ["events", "--limit", "5"],
        ["--json", "jeos_list"],
        ["assembly_ssh", "shop", "web", "--", "true"],
    ):
        status, heavy = heavy_modules_loaded(line, home.env)
        assert heavy == "[]", (line, status, heavy)
