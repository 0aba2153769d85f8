"""A running deployable seen and reached through pcloudsh, with a real cped.

- A deployable started for real (cped spawns its DPE, which makes local
  instances and starts Dummy resources): its status tree, its events, a
  command and its exit status over ``assembly_ssh``, and the stop.
- An instance made by the local driver and recorded in the store by the test
  (no DPE): ``assembly_ssh`` reaches it with the pinned host key, and refuses
  an instance that presents another key.

Every instance left is destroyed by the driver, and a DPE still running is
stopped by its pid.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import os
import re
import select
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dpe.drivers.registry import make_driver
from foundation.keyfiles import key_paths, load_assembly_keys
from foundation.model import Assembly
from foundation.paths import Paths
from foundation.store import Store
from tests.integration.conftest import CpedProcess
from tests.integration.test_pcloudsh_events import Shell, ShellHome, started
from tests.integration.test_pcloudsh_session import COMMAND_TIMEOUT, Terminal, alive, wait_gone

pytestmark = pytest.mark.integration
STATE_TIMEOUT = 30.0

CATALOG = [
    "assembly_create web host",
    "assembly_create db host",
    "assembly_resource_add pg dummy db",
    "assembly_resource_add www dummy web",
    "deployable_create shop",
    "deployable_assembly_add shop db",
    "deployable_assembly_add shop web",
    "deployable_constraint_add shop db/pg web/www",
]
BLOG = [
    "assembly_create cache host",
    "assembly_resource_add c dummy cache",
    "deployable_create blog",
    "deployable_assembly_add blog cache",
]


class Runtime(Shell):
    def ok(self, line: str) -> str:
        done = self.run(*line.split())
        assert done.returncode == 0, (line, done.stdout, done.stderr)
        return done.stdout

    def status(self, deployable: str = "shop") -> dict[str, Any]:
        return json.loads(self.ok(f"--json deployable_status {deployable}"))  # type: ignore[no-any-return]

    def wait_state(self, state: str) -> dict[str, Any]:
        deadline = time.monotonic() + STATE_TIMEOUT
        while True:
            status = self.status()
            if status["state"] == state and all(
                a["state"] == ("running" if state == "running" else "stopped")
                for a in status["assemblies"]
            ):
                return status
            assert time.monotonic() < deadline, f"not {state}: {status}"
            time.sleep(0.2)


@pytest.fixture
def shell(cped: CpedProcess) -> Iterator[Runtime]:
    runtime = Runtime(cped.paths)
    for line in CATALOG:
        runtime.ok(line)
    try:
        yield runtime
    finally:
        _leave_nothing_running(runtime, cped.paths)


def _leave_nothing_running(runtime: Runtime, paths: Paths, deployable: str = "shop") -> None:
    try:
        pid = runtime.status(deployable)["dpe"].get("pid")
    except (AssertionError, ValueError, KeyError):
        pid = None
    runtime.run("deployable_stop", deployable)
    if pid and not wait_gone(pid, STATE_TIMEOUT) and alive(pid):
        os.kill(pid, signal.SIGKILL)
    driver = make_driver("local", paths)
    for instance in asyncio.run(driver.list(deployable)):
        asyncio.run(driver.destroy(instance.instance_id))


def test_a_started_deployable_through_pcloudsh(shell: Runtime) -> None:
    assert shell.ok("deployable_start shop") == (
        "deployable shop starting (deployable_status shop shows how it goes)\n"
    )
    status = shell.wait_state("running")
    dpe_pid = status["dpe"]["pid"]
    assert shell.ok("deployable_start shop") == "deployable shop already running\n"

    lines = shell.ok("deployable_status shop").splitlines()
    assert lines[0].startswith(f"deployable shop: running (DPE pid {dpe_pid}, lease epoch ")
    web = next(a for a in status["assemblies"] if a["name"] == "web")
    assert any(
        f"assembly web: running (instance {web['instance']}, address 127.0.0.1, up " in line
        for line in lines
    )
    # www's escalation is off: no window counts its failures towards anything
    assert any("resource www: running (escalation off, last rc 0 (ok))" in line for line in lines)
    assert "last events:" in lines

    events = shell.ok("events --deployable shop --resource www").splitlines()
    assert any(
        line.endswith("resource [www] in assembly [web] in deployable [shop] is RUNNING: started")
        for line in events
    )

    hostname = shell.run("assembly_ssh", "shop", "web", "--", "hostname")
    assert (hostname.returncode, hostname.stdout, hostname.stderr) == (0, "web\n", "")
    assert shell.run("assembly_ssh", "shop", "db", "--", "exit", "7").returncode == 7
    reached = json.loads(shell.ok("--json assembly_ssh shop web"))
    assert reached["instance"] == web["instance"] and reached["host"] == "127.0.0.1"

    assert shell.ok("deployable_stop shop --wait") == "deployable shop stopped\n"
    stopped = shell.status()  # done when the command returns, not some time later
    assert (stopped["state"], stopped["dpe"].get("alive")) == ("stopped", False)
    assert all(a["state"] == "stopped" for a in stopped["assemblies"])
    assert wait_gone(dpe_pid, STATE_TIMEOUT)
    assert shell.ok("deployable_stop shop") == "deployable shop already stopped\n"
    gone = shell.run("assembly_ssh", "shop", "web", "--", "true")
    assert gone.returncode == 1
    assert "assembly 'web' of deployable 'shop' has no running instance (it is stopped)" in (
        gone.stderr
    )


def resource_of(status: dict[str, Any], assembly: str, name: str) -> dict[str, Any]:
    found = next(a for a in status["assemblies"] if a["name"] == assembly)
    return next(r for r in found["resources"] if r["name"] == name)  # type: ignore[no-any-return]


def test_a_resource_that_cannot_start_says_so_and_a_reload_says_what_changed(
    shell: Runtime,
) -> None:
    """A real agent whose start fails (no such program): between two tries it is
    stopped, and status says it cannot start, what its start returned, when again."""
    shell.ok("assembly_resource_add web/bad anything binfile=/nonexistent/prog")
    shell.ok("deployable_start shop")
    deadline = time.monotonic() + STATE_TIMEOUT
    while not (bad := resource_of(shell.status(), "web", "bad")).get("blocked"):
        assert time.monotonic() < deadline, bad
        time.sleep(0.2)
    assert bad["blocked"] == "backing off after failures in a row"
    failure = bad["last_failure"]
    assert (failure["op"], failure["rc"]) == ("start", 1), failure
    assert bad["failures_in_a_row"] >= 2 and bad["retry_at"] > time.time() - 1
    # the tree, while it is blocked: between two tries (a try's start is in flight)
    deadline = time.monotonic() + STATE_TIMEOUT
    while "cannot start: " not in (line := _tree_line(shell, "resource bad")):
        assert time.monotonic() < deadline, line
        time.sleep(0.2)
    assert "cannot start: backing off after failures in a row" in line
    assert "last failure: start returned 1 (unknown error)" in line

    cleaned = shell.ok("deployable_cleanup shop web/bad")
    assert cleaned, cleaned
    deadline = time.monotonic() + STATE_TIMEOUT
    while not (said := _events_saying(shell, "cleaned up web/bad")):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert re.search(r"cleaned up web/bad: [1-9]\d* failures? forgotten", said[-1]), said

    shell.ok("escalation_assembly_set db 2 300")
    shell.ok("escalation_deployable_set shop 2 3600")
    shell.ok("deployable_reload shop")
    deadline = time.monotonic() + STATE_TIMEOUT
    while not (said := _events_saying(shell, "reloaded: ")):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert said[-1].endswith(
        "reloaded: 1 assembly changed (db), 2 settings changed"
        " (escalation.failures, escalation.period)"
    ), said


def test_a_failed_deployable_started_again_runs_with_what_had_failed_recovered(
    shell: Runtime,
) -> None:
    """One failure anywhere fails it (every threshold 1): the killed process leaves
    its pidfile, so its agent says failed until a stop; ``deployable_start --wait``
    recovers it as new (the failure was counted when the deployable failed), runs."""
    shell.ok("assembly_resource_add web/sl anything binfile=/bin/sleep cmdline_options=infinity")
    shell.ok("escalation_resource_set web/sl 1 60")
    shell.ok("escalation_assembly_set web 1 300")
    shell.ok("escalation_deployable_set shop 1 3600")
    shell.ok("deployable_start shop --wait")
    killed = shell.run("assembly_ssh", "shop", "web", "--", "pkill", "-f", "^/bin/sleep infinity")
    assert killed.returncode == 0, killed.stderr
    deadline = time.monotonic() + STATE_TIMEOUT
    while shell.status()["state"] != "failed":
        assert time.monotonic() < deadline, shell.status()
        time.sleep(0.2)
    started_again = shell.run("deployable_start", "shop", "--wait")
    assert started_again.returncode == 0, (started_again.stdout, started_again.stderr)
    assert resource_of(shell.status(), "web", "sl")["state"] == "running"
    said = _events_saying(shell, "failed when the deployable did")
    assert said and said[-1].endswith("recovered as new, not counted again"), said


def _tree_line(shell: Runtime, words: str) -> str:
    return next(x for x in shell.ok("deployable_status shop").splitlines() if words in x)


def _events_saying(shell: Runtime, words: str) -> list[str]:
    return [line for line in shell.ok("events --deployable shop").splitlines() if words in line]


class JsonLines:
    """The JSON lines a process prints, read from its pipe as they come."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        self.fd = proc.stdout.fileno()  # read unbuffered: select sees every byte still unread
        self.pending = b""

    def until(self, last: Callable[[Any], bool]) -> list[Any]:
        """The documents up to the first one ``last`` accepts."""
        documents: list[Any] = []
        deadline = time.monotonic() + STATE_TIMEOUT
        while not documents or not last(documents[-1]):
            if b"\n" not in self.pending:
                left = deadline - time.monotonic()
                assert left > 0 and select.select([self.fd], [], [], left)[0], documents
                chunk = os.read(self.fd, 65536)
                assert chunk, f"the output ended: {documents}"
                self.pending += chunk
                continue
            line, self.pending = self.pending.split(b"\n", 1)
            documents.append(json.loads(line))
        return documents


@pytest.fixture
def blog(shell: Runtime, cped: CpedProcess) -> Iterator[str]:
    """A second deployable, of one assembly."""
    for line in BLOG:
        shell.ok(line)
    try:
        yield "blog"
    finally:
        _leave_nothing_running(shell, cped.paths, "blog")


def test_lifecycle_of_several_deployables_waits_and_is_watched(shell: Runtime, blog: str) -> None:
    late = shell.run("deployable_start", "shop", "--wait", "--timeout", "1ms")
    assert late.returncode == 1, late
    assert re.fullmatch(
        r"pcloudsh: error: deployable shop is still \w+ after 0\.001 s "
        r"\(waiting until it is running\)(; last event: .*)?\n",
        late.stderr,
    ), late.stderr

    with started(
        shell.popen("--json", "deployable_status", blog, "--watch", "--interval", "100ms")
    ) as watch:
        watched = JsonLines(watch)
        assert watched.until(lambda _status: True)[0]["state"] == "stopped"
        assert shell.ok("deployable_start --all --wait").splitlines() == [
            "deployable blog running",
            "deployable shop running",
        ]
        for name in ("blog", "shop"):  # running when the command returns
            status = shell.status(name)
            assert status["state"] == "running", status
            assert all(a["state"] == "running" for a in status["assemblies"]), status
        seen = watched.until(lambda status: status["state"] == "running")
        assert all(before != after for before, after in itertools.pairwise(seen))  # changes only
        watch.send_signal(signal.SIGINT)
        assert watch.wait(COMMAND_TIMEOUT) == 130
        assert watch.stderr is not None and watch.stderr.read() == ""

    assert shell.ok(f"deployable_stop --wait shop {blog}").splitlines() == [
        "deployable shop stopped",
        "deployable blog stopped",
    ]
    for name in ("blog", "shop"):
        status = shell.status(name)
        assert (status["state"], status["dpe"].get("alive")) == ("stopped", False), status
    assert shell.ok("deployable_stop --all").splitlines() == [
        "deployable blog already stopped",
        "deployable shop already stopped",
    ]


@pytest.fixture
def recorded_instance(shell: Runtime, cped: CpedProcess) -> Iterator[dict[str, Any]]:
    """An instance of web made by the local driver, recorded as a DPE records it."""
    paths = cped.paths
    driver = make_driver("local", paths)
    keys = load_assembly_keys(paths.keys_dir, "web")
    instance = asyncio.run(
        driver.create(
            "shop", Assembly(name="web", uuid="00000000-0000-4000-8000-00000000000a"), keys
        )
    )
    doc = {**dataclasses.asdict(instance), "state": str(instance.state)}
    store = Store.open(paths.store_file)
    try:
        store.put_runtime("shop", "instance", "web", doc)
        store.put_runtime("shop", "assembly", "web", {"state": "running", "failures": []})
        yield doc
    finally:
        store.close()
        asyncio.run(driver.destroy(instance.instance_id))


def test_assembly_ssh_accepts_only_the_pinned_host_key(
    shell: Runtime, cped: CpedProcess, recorded_instance: dict[str, Any]
) -> None:
    tree = shell.ok("deployable_status shop")
    assert f"assembly web: running (instance {recorded_instance['instance_id']}" in tree
    done = shell.run("assembly_ssh", "shop", "web", "--", "echo $((6*7)); exit 3")
    assert (done.returncode, done.stdout) == (3, "42\n")  # one word: a remote command line
    words = shell.run("assembly_ssh", "shop", "web", "--", "printf", "[%s]", "a b", "$HOME", ";")
    assert (words.returncode, words.stdout) == (0, "[a b][$HOME][;]")  # words reach it as typed

    # from the interactive shell: a login session on its terminal, then the prompt again
    terminal = Terminal(ShellHome(shell))  # type: ignore[arg-type]
    try:
        terminal.read_until(re.compile(r"pcloudsh#\s*$"))
        terminal.type("events_live off")
        terminal.buffer = b""
        os.write(terminal.master, b"assembly_ssh shop web\r")
        terminal.read_until(re.compile(r"shop web\n[\s\S]*\S[#$>]\s*$"))  # a remote prompt
        os.write(terminal.master, b"echo MARK-$((2+3)) on $(hostname); exit 4\r")
        terminal.read_until(re.compile(r"MARK-5 on web\n[\s\S]*pcloudsh#\s*$"))
        assert terminal.type("events_live") == "live events: off\n"  # the shell goes on
        os.write(terminal.master, b"quit\r")
        assert terminal.proc.wait(COMMAND_TIMEOUT) == 0
    finally:
        terminal.close()

    # the pinned key is another one: ssh refuses the instance, nothing is run
    _private, _public, _host, host_public = key_paths(cped.paths.keys_dir, "web")
    pinned = host_public.read_text()
    other = cped.paths.state_dir / "other"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True, timeout=30
    )
    host_public.write_text(other.with_suffix(".pub").read_text())
    try:
        refused = shell.run("assembly_ssh", "shop", "web", "--", "touch", "/tmp/pc-should-not-run")
    finally:
        host_public.write_text(pinned)
    assert refused.returncode == 255
    assert "Host key verification failed" in refused.stderr
    assert not os.path.exists("/tmp/pc-should-not-run")
