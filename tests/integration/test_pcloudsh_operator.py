"""What an operator sees of failures, clean-ups and pending changes, through the real
pcloudsh and cped, with real local guests (sshd) and real OCF Dummy agents.

- A normal stop reads as a stop in the events, not as fencing or lost guests.
- A resource restarted because of another one's failure says why.
- Status counts only the failures inside the escalation period.
- ``deployable_cleanup`` forgets a resource's failures, and says so.
- A change to a running deployable waits for ``deployable_reload`` visibly: an
  event, status, the list and ``deployable_diff``.
- An assembly's escalation that marks the deployable failed is told when it
  happens (an event and dped's log).
- An instance whose sshd presents another host key than the pinned one is an
  assembly failed for that reason, never a lost guest fenced and made again.

A resource fails by losing its Dummy state file (its monitor then finds it not
running); an instance is lost by killing its init.  Every instance left is
destroyed by the driver, and a DPE still running is stopped by its pid.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cpe.dpe_process import dped_log_file
from foundation.keyfiles import key_paths
from foundation.store import Store
from tests.integration.conftest import CpedProcess
from tests.integration.test_pcloudsh_runtime import Runtime, _leave_nothing_running

pytestmark = pytest.mark.integration
TIMEOUT = 30.0

CATALOG = [
    "assembly_create web host",
    "assembly_create db host",
    "assembly_resource_add pg dummy db --monitor-interval 1s",
    "assembly_resource_add www dummy web --monitor-interval 1s",
    "deployable_create shop",
    "deployable_assembly_add shop db",
    "deployable_assembly_add shop web",
    "deployable_constraint_add shop db/pg web/www",
]


class Operator(Runtime):
    def events(self, **only: str) -> list[dict[str, Any]]:
        filters = [f"--{k}={v}" for k, v in only.items()]
        out = self.ok(" ".join(["--json events --deployable shop --limit 1000", *filters]))
        return list(json.loads(out))

    def lines(self, **only: str) -> list[str]:
        return [f"{_subject(e)} {e['state']}: {e['reason']}" for e in self.events(**only)]

    def resource(self, assembly: str, name: str) -> dict[str, Any]:
        status = self.status()
        part = next(a for a in status["assemblies"] if a["name"] == assembly)
        return dict(next(r for r in part["resources"] if r["name"] == name))

    def instance(self, assembly: str) -> dict[str, Any]:
        store = Store.open(self.paths.store_file)
        try:
            return dict(store.get_runtime("shop", "instance")["instance"][assembly])
        finally:
            store.close()

    def recorded_failures(self, rid: str) -> list[float]:
        store = Store.open(self.paths.store_file)
        try:
            return list(store.get_runtime("shop", "resource")["resource"][rid]["failures"])
        finally:
            store.close()

    def fail(self, assembly: str, resource: str) -> None:
        """The resource's Dummy state file goes: its next monitor finds it not running."""
        directory = Path(self.instance(assembly)["extra"]["dir"])
        [state] = directory.rglob(f"Dummy-{resource}.state")
        state.unlink()

    def kill_instance(self, assembly: str) -> None:
        """Kill the guest's init: the kernel kills everything in its PID namespace."""
        os.kill(int(self.instance(assembly)["extra"]["init_pid"]), signal.SIGKILL)


def _subject(event: dict[str, Any]) -> str:
    parts = [event.get(k) for k in ("assembly", "resource")]
    return "/".join(p for p in parts if p) or str(event.get("deployable"))


def until(condition: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        assert time.monotonic() < deadline, f"not within {timeout:g} s: {what}"
        time.sleep(0.2)


@pytest.fixture
def shell(cped: CpedProcess) -> Iterator[Operator]:
    operator = Operator(cped.paths)
    for line in CATALOG:
        operator.ok(line)
    try:
        yield operator
    finally:
        _leave_nothing_running(operator, cped.paths)


def start(shell: Operator) -> None:
    assert shell.ok("deployable_start shop --wait") == "deployable shop running\n"
    until(lambda: all(
        r["state"] == "running" for a in shell.status()["assemblies"] for r in a["resources"]
    ), "every resource running")  # fmt: skip


def test_a_normal_stop_reads_as_a_stop(shell: Operator) -> None:
    start(shell)
    before = len(shell.events())
    assert shell.ok("deployable_stop shop --wait") == "deployable shop stopped\n"
    stop = shell.events()[before:]
    assert stop, "the stop told nothing"
    states = {e["state"] for e in stop}
    assert not states & {"fencing", "unknown", "failed"}, stop
    for assembly in ("web", "db"):
        assert any(
            e.get("assembly") == assembly and e["state"] == "stopping"
            and e["reason"] == "the deployable is stopping: destroying its instance"
            for e in stop
        ), stop  # fmt: skip
    own = [e for e in stop if not e.get("assembly") and not e["state"].startswith("dpe-")]
    assert (own[-1]["state"], own[-1]["reason"]) == (
        "stopped",
        "every resource stopped, every instance destroyed",
    )
    assert stop[-1]["state"] == "dpe-exited" and stop[-1]["reason"].endswith("exited with status 0")


def test_failures_say_why_count_in_their_window_and_clean_up(shell: Operator) -> None:
    shell.ok("escalation_resource_set pg db 5 10")  # 5 failures in 10 s: counted for 10 s
    shell.ok("escalation_resource_set www web 5 600")
    start(shell)

    # pg fails: www, ordered after it, is restarted and says why
    shell.fail("db", "pg")
    until(lambda: shell.resource("db", "pg")["failures"], "pg's failure counted")
    failed_at = time.time()
    assert "resource pg: running (1 failure" in shell.ok("deployable_status shop")
    reason = "restarting because db/pg failed (order db/pg then web/www)"
    www = until(
        lambda: [line for line in shell.lines(resource="www") if reason in line], "www's restart"
    )
    assert f"web/www stopping: stopping: {reason}" in www
    until(lambda: shell.resource("web", "www")["state"] == "running", "www running again")
    assert any(
        line.startswith("web/www starting: starting (ocf:heartbeat:Dummy): ") and reason in line
        for line in shell.lines(resource="www")
    )

    # status counts what is inside the escalation period; the record keeps the time
    until(lambda: time.time() > failed_at + 11, "the period to pass", 30)
    assert shell.resource("db", "pg")["failures"] == []
    assert "resource pg: running (0 failures" in shell.ok("deployable_status shop")
    assert len(shell.recorded_failures("db/pg")) == 1

    # www fails; a clean-up forgets it
    shell.fail("web", "www")
    until(lambda: len(shell.resource("web", "www")["failures"]) == 1, "www's failure counted")
    until(lambda: shell.resource("web", "www")["state"] == "running", "www running again")
    answer = json.loads(shell.ok("--json deployable_cleanup shop web/www"))
    assert (answer["deployable"], answer["scope"]) == ("shop", "web/www")
    assert answer["note"].startswith("clean-up requested: the DPE (pid ")
    until(lambda: shell.resource("web", "www")["failures"] == [], "www's failures forgotten")
    assert shell.recorded_failures("web/www") == []
    assert "web/www running: cleaned up web/www: 1 failure forgotten" in shell.lines(resource="www")
    said = shell.ok("deployable_cleanup shop web")
    assert said.startswith("deployable shop: web: clean-up requested: ")
    refused = shell.run("deployable_cleanup", "shop", "web/nosuch")
    assert refused.returncode == 2 and "has no resource 'nosuch'" in refused.stderr


def test_changes_wait_visibly_for_a_reload(shell: Operator) -> None:
    start(shell)
    assert shell.ok("deployable_diff shop") == "deployable shop: no changes pending reload\n"
    shell.ok("assembly_resource_add extra dummy web --monitor-interval 1s")
    shell.ok("escalation_deployable_set shop 3 1h")

    pending = [e for e in shell.events() if e["state"] == "changes-pending"]
    assert [e["reason"] for e in pending] == [
        "changes pending reload: 1 resource added (web/extra) (deployable_reload shop applies"
        " them)",
        "changes pending reload: 1 resource added (web/extra), 2 settings changed"
        " (escalation.failures, escalation.period) (deployable_reload shop applies them)",
    ]
    summary = pending[-1]["reason"].removeprefix("changes pending reload: ").split(" (deploy")[0]
    assert shell.status()["pending_reload"] == summary
    status = shell.ok("deployable_status shop")
    assert f"changes pending reload: {summary}\n" in status
    listed = shell.ok("deployable_list").splitlines()
    assert listed[0].split()[4] == "Pending" and listed[2].split()[4] == "reload", listed
    assert shell.ok("deployable_diff shop").splitlines() == [
        "deployable shop: changes pending reload (deployable_reload shop applies them)",
        "+ resource web/extra",
        "~ setting escalation.failures: 0 -> 3",  # off, then on
        "~ setting escalation.period: 0 -> 3600",
    ]
    diff = json.loads(shell.ok("--json deployable_diff shop"))
    assert (diff["pending"], diff["resources"]["added"]) == (True, ["web/extra"])

    shell.ok("deployable_reload shop")
    until(lambda: shell.status()["pending_reload"] == "", "the reload applied")
    until(lambda: shell.resource("web", "extra")["state"] == "running", "extra running")
    assert shell.ok("deployable_diff shop") == "deployable shop: no changes pending reload\n"
    assert json.loads(shell.ok("--json deployable_list"))[0]["pending_reload"] == ""

    shell.ok("assembly_resource_add more dummy db --monitor-interval 1s")
    assert shell.ok("deployable_reload shop --wait --timeout 1m") == "deployable shop running\n"
    assert shell.resource("db", "more")["state"] == "running"  # no waiting of its own
    assert shell.status()["pending_reload"] == ""


def test_a_service_move_leaves_the_changes_waiting_for_a_reload(shell: Operator) -> None:
    shell.ok("deployable_service_add shop cache dummy --on web:100,db:50 --monitor-interval 1s")
    start(shell)
    until(lambda: shell.resource("web", "cache")["state"] == "running", "cache running on web")
    shell.ok("assembly_resource_add extra dummy web --monitor-interval 1s")

    said = shell.ok("deployable_service_move shop cache db")
    assert said.startswith("service cache of deployable shop: move to db requested (the DPE ")
    until(
        lambda: "db/cache running: cache moved to db as requested" in shell.lines(resource="cache"),
        "cache moved to db",
    )
    assert shell.status()["pending_reload"] == "1 resource added (web/extra)"
    assert not shell.lines(resource="extra"), "the move applied a change waiting for a reload"
    assert shell.resource("web", "extra")["state"] == "stopped"


def _unreachable(shell: Operator) -> Callable[[], list[dict[str, Any]]]:
    """A deployable "far" whose hypervisor cannot be reached: each DPE fails to start.
    Its DPEs' events, once one failed (it is stopped again by the caller)."""
    uri = "qemu+unix:///session?socket=/nonexistent/libvirt-sock"
    shell.ok(f"deployable_create far libvirt --uri {uri}")
    shell.ok("assembly_create lone host")
    shell.ok("deployable_assembly_add far lone")

    def dpe_events() -> list[dict[str, Any]]:
        events = json.loads(shell.ok("--json events --deployable far"))
        return [e for e in events if e["state"].startswith("dpe-")]

    shell.ok("deployable_start far")
    until(lambda: [e for e in dpe_events() if e["state"] == "dpe-restarting"], "a restart")
    return dpe_events


def test_a_dpe_that_cannot_start_says_why(shell: Operator) -> None:
    """The DPE's own words reach the events, rather than a DPE killed for giving its
    lease up before it could say why."""
    try:
        dpe_events = _unreachable(shell)
    finally:
        shell.run("deployable_stop", "far")
    restarting = next(e for e in dpe_events() if e["state"] == "dpe-restarting")
    assert "exited with status 1 (dped: cannot list the instances of far (" in restarting["reason"]
    assert not [e for e in dpe_events() if e["state"] == "dpe-killed"]


def test_a_deployable_whose_dpes_never_started_is_stopped_once_stopped(shell: Operator) -> None:
    """No DPE ran the stop, so none recorded it: cped does, rather than leave the
    "starting" the last failed DPE recorded."""
    try:
        _unreachable(shell)
    finally:
        said = shell.run("deployable_stop", "far")
    assert said.stdout == "deployable far stopped\n"
    status = shell.status("far")
    assert (status["state"], status["desired"]) == ("stopped", "stopped"), status
    assert status["reason"] == "stopped with no DPE running (the last one recorded starting)"
    assert json.loads(shell.ok("--json deployable_list"))[0]["state"] == "stopped"


def test_an_assembly_escalation_that_fails_the_deployable_is_told_then(
    shell: Operator, cped: CpedProcess
) -> None:
    shell.ok("escalation_assembly_set web 1 60")
    shell.ok("escalation_deployable_set shop 1 3600")
    start(shell)
    shell.kill_instance("web")
    until(lambda: shell.status()["state"] == "failed", "the deployable failed")
    told = [line for line in shell.lines() if line.startswith("shop ")]
    step = "shop recovering: assembly web: 1 failure in 60 s: escalating to deployable"
    verdict = "shop failed: 1 failure in 3600 s: no more recovery until it is started again"
    assert told[-2:] == [step, verdict], told
    log = dped_log_file(cped.paths, "shop").read_text()
    assert "recovering: assembly web: 1 failure in 60 s: escalating to deployable" in log
    assert log.index("escalating to deployable") < log.index("no more recovery")


def test_a_host_key_mismatch_is_not_a_lost_guest(shell: Operator, cped: CpedProcess) -> None:
    """web's sshd presents its real host key; the key pinned for web is another one."""
    _private, _public, _host, host_public = key_paths(cped.paths.keys_dir, "web")
    pinned = host_public.read_text()
    other = cped.paths.state_dir / "other"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True, timeout=30
    )
    host_public.write_text(other.with_suffix(".pub").read_text())
    shell.ok("deployable_start shop")
    web = until(
        lambda: next(
            (a for a in shell.status()["assemblies"] if a["name"] == "web" and a["state"] == "failed"),
            None,
        ),
        "web failed",
    )  # fmt: skip
    assert web["reason"].startswith("host key mismatch: web (127.0.0.1:")
    assert "host key does not match the pinned key: it " in web["reason"]
    assert web["reason"].endswith("until deployable_cleanup shop web")
    until(lambda: shell.resource("db", "pg")["state"] == "running", "db's pg running")
    time.sleep(5)  # a re-create loop would make instances about once a second
    lines = shell.lines(assembly="web")
    assert len([line for line in lines if line.startswith("web creating:")]) == 1, lines
    assert not [line for line in lines if "connection lost" in line or " fencing:" in line]
    assert [line for line in lines if line.startswith("web failed: host key mismatch: web (")]
    assert shell.status()["assemblies"][1]["failures"] == []  # not counted as a failure

    host_public.write_text(pinned)  # the right key again: a clean-up makes web anew
    shell.ok("deployable_cleanup shop web")
    until(lambda: shell.status()["state"] == "running", "the deployable running")
    lines = shell.lines(assembly="web")
    assert len([line for line in lines if line.startswith("web creating:")]) == 2, lines
