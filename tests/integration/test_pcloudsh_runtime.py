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
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from dpe.drivers.registry import make_driver
from foundation.keyfiles import key_paths, load_assembly_keys
from foundation.model import Assembly
from foundation.paths import Paths
from foundation.store import Store
from tests.integration.conftest import CpedProcess
from tests.integration.test_pcloudsh_events import Shell, ShellHome
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


class Runtime(Shell):
    def ok(self, line: str) -> str:
        done = self.run(*line.split())
        assert done.returncode == 0, (line, done.stdout, done.stderr)
        return done.stdout

    def status(self) -> dict[str, Any]:
        return json.loads(self.ok("--json deployable_status shop"))  # type: ignore[no-any-return]

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


def _leave_nothing_running(runtime: Runtime, paths: Paths) -> None:
    try:
        pid = runtime.status()["dpe"].get("pid")
    except (AssertionError, ValueError, KeyError):
        pid = None
    runtime.run("deployable_stop", "shop")
    if pid and not wait_gone(pid, STATE_TIMEOUT) and alive(pid):
        os.kill(pid, signal.SIGKILL)
    driver = make_driver("local", paths)
    for instance in asyncio.run(driver.list("shop")):
        asyncio.run(driver.destroy(instance.instance_id))


def test_a_started_deployable_through_pcloudsh(shell: Runtime) -> None:
    assert shell.ok("deployable_start shop") == "deployable shop starting\n"
    status = shell.wait_state("running")
    dpe_pid = status["dpe"]["pid"]

    lines = shell.ok("deployable_status shop").splitlines()
    assert lines[0].startswith(f"deployable shop: running (DPE pid {dpe_pid}, lease epoch ")
    web = next(a for a in status["assemblies"] if a["name"] == "web")
    assert any(
        f"assembly web: running (instance {web['instance']}, address 127.0.0.1, up " in line
        for line in lines
    )
    assert any("resource www: running (0 failures, last rc 0 (ok))" in line for line in lines)
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

    assert shell.ok("deployable_stop shop") == "deployable shop stopping\n"
    shell.wait_state("stopped")
    assert wait_gone(dpe_pid, STATE_TIMEOUT)
    gone = shell.run("assembly_ssh", "shop", "web", "--", "true")
    assert gone.returncode == 1
    assert "assembly 'web' of deployable 'shop' has no running instance (it is stopped)" in (
        gone.stderr
    )


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
    done = shell.run("assembly_ssh", "shop", "web", "--", "echo", "$((6*7))", "; exit 3")
    assert (done.returncode, done.stdout) == (3, "42\n")

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
