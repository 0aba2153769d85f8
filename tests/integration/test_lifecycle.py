"""Deployables run by a real cped with real dped processes on the local driver.

Assemblies are ``host`` assemblies (private sshd guests) running
``ocf:heartbeat:Dummy``; intervals are short (lease 1 s renewed every 0.2 s,
back-off 0.1 s doubling to 0.8 s, heartbeat 0.2 s, monitors 0.5 s) so each
test takes seconds.  Every wait polls a condition with a bound.

The helpers here (``Rig``) are shared with ``test_supervision.py``.  A rig's
teardown stops its deployables through the API and then kills, by pid, any
process that still belongs to the test's ``PCLOUD_HOME`` (found through
``/proc``: its command line or environment names that directory).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cpe import control
from cpe.client import Client
from cpe.control import process_alive
from cpe.dpe_process import DPED_MARKERS, command_line, looks_like_dped
from dpe.template import TITLE as TEMPLATE_TITLE
from foundation.errors import Conflict, PcloudError
from foundation.paths import Paths
from images.keys import write_assembly_keys
from tests.integration.conftest import CpedFactory, CpedProcess
from tests.processes import kill_until_gone

pytestmark = pytest.mark.integration

ASSEMBLIES = ("a1", "a2", "a3")
CONFIG = """\
[cped]
lease_ttl = 1s
dpe_backoff_initial = 100ms
dpe_backoff_max = 800ms
[dped]
lease_renew_interval = 200ms
"""


def dummy(name: str) -> dict[str, Any]:
    return {"name": name, "type": "Dummy", "monitor_interval": 0.5}


MONITORING: list[str] = []  # the mode ``shop`` and the fault suite's documents ask for


def monitored(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` in the mode of ``MONITORING`` (else the default: active)."""
    return document | {"monitoring": MONITORING[-1]} if MONITORING else document


def shop(*assemblies: str, name: str = "shop") -> dict[str, Any]:
    return monitored(
        {
            "name": name,
            "heartbeat": {"interval": 0.2, "timeout": 0.6, "health_interval": 1},
            "assemblies": [{"name": a, "resources": [dummy(f"{a}-d")]} for a in assemblies],
        }
    )


@pytest.fixture(scope="module")
def key_cache() -> Iterator[Path]:
    """Key pairs for the test assemblies, made once per module."""
    directory = Path(tempfile.mkdtemp(prefix="pc-keys-", dir="/tmp"))
    try:
        for assembly in ASSEMBLIES:
            write_assembly_keys(directory, assembly)
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class Rig:
    paths: Paths
    factory: CpedFactory
    cped: CpedProcess

    @property
    def home(self) -> str:
        return str(self.paths.config_dir.parent)

    @property
    def client(self) -> Client:
        return self.cped.client

    def new_cped(self) -> CpedProcess:
        self.cped = self.factory()
        return self.cped

    def status(self, name: str = "shop") -> dict[str, Any]:
        return self.client.deployable_status(name)

    def until(self, condition: Callable[[], Any], within: float = 15.0, what: str = "") -> Any:
        deadline = time.monotonic() + within
        while True:
            with contextlib.suppress(PcloudError):
                value = condition()
                if value:
                    return value
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {within:g} s: {what}\n{self.cped.log()[-3000:]}")
            time.sleep(0.02)

    def running(self, name: str = "shop", within: float = 15.0) -> dict[str, Any]:
        """Wait until every assembly and resource of ``name`` runs, as recorded by the
        DPE that holds the lease now (not by one killed before); the status."""

        def up() -> dict[str, Any] | None:
            status = self.status(name)
            resources = [r for a in status["assemblies"] for r in a["resources"]]
            states = {status["state"], *(a["state"] for a in status["assemblies"])}
            states |= {r["state"] for r in resources}
            dpe = status["dpe"]
            held = dpe["supervision"] == "running" and dpe["lease_holder"] is not None
            if states != {"running"} or not held:
                return None
            return status if self._recorded_by(name, dpe["lease_epoch"]) else None

        return dict(self.until(up, within, f"{name} running"))

    def _recorded_by(self, name: str, epoch: int) -> bool:
        """The deployable became running after the DPE of lease ``epoch`` started."""
        events = self.events(name)
        mine = [e for e in events if e["assembly"] is None and not e["state"].startswith("dpe-")]
        started = f"engine started (lease epoch {epoch})"
        begun = [i for i, e in enumerate(mine) if e["reason"] == started]
        return bool(begun) and any(e["state"] == "running" for e in mine[begun[-1] :])

    def events(self, name: str = "shop") -> list[dict[str, Any]]:
        """Every event of ``name``, oldest first (the API gives 1000 at most a page)."""
        events: list[dict[str, Any]] = []
        while page := self.client.query_events(
            deployable=name, after_id=events[-1]["id"] if events else 0, limit=1000
        ):
            events += page
        return events

    def dpe_events(self, name: str = "shop") -> list[tuple[str, str]]:
        events = self.client.query_events(deployable=name, limit=1000)
        return [(e["state"], e["reason"]) for e in events if e["state"].startswith("dpe-")]

    def dpes(self, name: str = "shop") -> list[int]:
        """Live dped processes of this home for ``name`` (whoever started them)."""
        return [
            pid
            for pid, argv in self.processes().items()
            if looks_like_dped(argv, name, DPED_MARKERS)
        ]

    def processes(self) -> dict[int, list[str]]:
        """Every live process of this test's home but cped and its dped template:
        DPEs, guests, agents."""
        cpeds = {p.proc.pid for p in [self.cped] if p.proc is not None}
        found = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in cpeds | self.templates():
                continue
            pid = int(entry.name)
            argv = command_line(pid)
            if argv and process_alive(pid) and self._belongs(pid, argv):
                found[pid] = argv
        return found

    def templates(self) -> set[int]:
        """The dped templates of this test's cpeds (they live as long as their cped)."""
        children: set[int] = set()
        for cped in [self.cped]:
            if cped.proc is not None and cped.proc.poll() is None:
                children |= child_pids(cped.proc.pid)
        return {pid for pid in children if command_line(pid) == [TEMPLATE_TITLE]}

    def _belongs(self, pid: int, argv: list[str]) -> bool:
        if any(self.home in word for word in argv):
            return True
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            return False
        return f"PCLOUD_HOME={self.home}".encode() in environ.split(b"\0")

    def teardown(self) -> None:
        with contextlib.suppress(PcloudError):
            for row in self.client.list_deployables():
                with contextlib.suppress(PcloudError):
                    self.client.stop_deployable(row["name"])
        kill_until_gone(self.processes)


def child_pids(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found |= {int(word) for word in task.read_text().split()}
    return found


def is_dped(argv: list[str]) -> bool:
    return any(Path(word).name in DPED_MARKERS for word in argv[:4])


@pytest.fixture
def rig(cped_factory: CpedFactory, pcloud_home: Paths, key_cache: Path) -> Iterator[Rig]:
    shutil.copytree(key_cache, pcloud_home.keys_dir, dirs_exist_ok=True)
    made = Rig(pcloud_home, cped_factory, cped_factory(CONFIG))
    try:
        yield made
    finally:
        made.teardown()


def instance_ids(status: dict[str, Any]) -> dict[str, str]:
    return {a["name"]: a["instance"] for a in status["assemblies"]}


# ---------------------------------------------------------------------------


def test_start_status_and_stop_leave_nothing_behind(rig: Rig) -> None:
    rig.client.put_deployable("shop", shop("a1", "a2"))
    answer = rig.client.start_deployable("shop")
    assert answer["desired"] == "started"
    # cped answers once the template forked the DPE; it names itself a moment later.
    rig.until(lambda: answer["pid"] in rig.dpes(), 10.0, f"pid {answer['pid']} is a dped")
    status = rig.running()
    assert status["desired"] == "started" and status["dpe"]["pid"] == answer["pid"]
    assert status["dpe"]["lease_epoch"] == 1 and status["dpe"]["supervision"] == "running"
    for assembly in status["assemblies"]:
        assert assembly["instance"] and assembly["address"] == "127.0.0.1"
        assert assembly["resources"][0]["last_rc"] == 0
    assert rig.dpe_events()[:2] == [
        ("dpe-started", f"dpe started (pid {answer['pid']}) on a start request"),
        ("dpe-running", f"dpe (pid {answer['pid']}) holds the lease (epoch 1)"),
    ]
    again = rig.client.start_deployable("shop")
    assert again["note"] == "already running" and rig.dpes() == [answer["pid"]]
    guests = [pid for pid, argv in rig.processes().items() if pid != answer["pid"]]
    assert guests, "the instances run as processes of this home"

    stopped = rig.client.stop_deployable("shop")
    assert stopped["state"] == "stopped" and stopped["dpe"]["exit"] == "status 0"
    assert rig.processes() == {}, "an instance, sshd or agent process is left"
    status = rig.status()
    assert status["state"] == "stopped" and not status["dpe"]["alive"]
    assert {a["state"] for a in status["assemblies"]} == {"stopped"}
    assert [kind for kind, _ in rig.dpe_events()][-2:] == ["dpe-stopping", "dpe-exited"]


def test_start_refuses_what_cannot_run(rig: Rig) -> None:
    rig.client.put_deployable("shop", shop("a1"))
    # a9 is an assembly of the catalog (so the reference is accepted when written),
    # but not of shop: shop's document cannot be resolved when it starts
    rig.client.put_deployable("elsewhere", shop("a9", name="elsewhere"))
    rig.client.add_resource(
        "a1", {"name": "app", "type": "Dummy", "parameters": {"peer": {"ref": "a9:ipaddress"}}}
    )
    with pytest.raises(Conflict, match="document is incomplete"):
        rig.client.start_deployable("shop")
    rig.client.put_deployable("other", shop("nokeys", name="other"))
    with pytest.raises(Conflict, match="no key pair for assembly nokeys"):
        rig.client.start_deployable("other")
    assert rig.dpes("shop") == [] and rig.dpes("other") == []


def test_reload_applies_a_new_resource_without_new_instances(rig: Rig) -> None:
    rig.client.put_deployable("shop", shop("a1"))
    rig.client.start_deployable("shop")
    before = rig.running()
    rig.client.add_resource("a1", dummy("extra"))
    answer = rig.client.reload_deployable("shop")
    assert answer["pid"] == before["dpe"]["pid"]

    def extra_runs() -> bool:
        (a1,) = rig.status()["assemblies"]
        return {r["name"]: r["state"] for r in a1["resources"]} == {
            "a1-d": "running",
            "extra": "running",
        }

    rig.until(extra_runs, what="the new resource running")
    after = rig.status()
    assert instance_ids(after) == instance_ids(before)
    assert after["dpe"]["pid"] == before["dpe"]["pid"]


def test_a_dpe_stuck_in_its_stop_is_killed_and_what_it_left_is_stopped(rig: Rig) -> None:
    rig.client.put_deployable("shop", shop("a1"))
    rig.client.start_deployable("shop")
    pid = rig.running()["dpe"]["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        answer = rig.client.stop_deployable("shop", kill_after=1.0)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    assert answer["state"] == "stopped", answer
    assert answer["dpe"]["left"] == []
    events = rig.dpe_events()
    assert ("dpe-killed", f"dpe (pid {pid}) did not stop within 1 s: killed (SIGKILL)") in events
    assert any("to stop what is left (a1)" in why for _, why in events)
    assert rig.processes() == {}


def test_a_dpe_killed_in_its_stop_is_replaced_by_one_that_creates_nothing(rig: Rig) -> None:
    """Killed (-9) once a1 is destroyed and a2/slow's stop is in flight: the DPE
    started to stop what is left adopts a2, probes slow, and never creates a1 again."""
    document = shop("a1", "a2")
    delays = {"startdelay": "0", "stopdelay": "4", "mondelay": "0"}
    slow = {"name": "slow", "type": "Delay", "parameters": delays, "timeouts": {"stop": 20}}
    document["assemblies"][1]["resources"] = [slow]
    rig.client.put_deployable("shop", document)
    rig.client.start_deployable("shop")
    pid = rig.running(within=60)["dpe"]["pid"]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        stopping = pool.submit(rig.client.stop_deployable, "shop")
        rig.until(lambda: a1_destroyed_while_slow_stops(rig), what="a1 gone, a2/slow stopping")
        mark = rig.events()[-1]["id"]
        os.kill(pid, signal.SIGKILL)
        stopping.result(timeout=60)  # it may answer "still stopping" before the end
    rig.until(lambda: deployable_stopped(rig), 60.0, "the deployable stopped")
    after = [
        (e["assembly"], e["resource"], e["state"], e["reason"])
        for e in rig.events()
        if e["id"] > mark
    ]
    assert any("to stop what is left (a2)" in reason for *_, reason in after), after
    assert not [e for e in after if e[2] == "creating"], after
    assert ("a2", "slow", "stopped", "probe: not running") in after, after
    stopped = [e for e in after if e[:3] == (None, None, "stopped")]
    assert stopped == [(None, None, "stopped", "every resource stopped, every instance destroyed")]
    assert rig.processes() == {}


def deployable_stopped(rig: Rig) -> bool:
    status = rig.status()
    return status["state"] == "stopped" and not status["dpe"]["alive"] and not rig.dpes()


def a1_destroyed_while_slow_stops(rig: Rig) -> bool:
    states = {(a["name"], a["state"]): a for a in rig.status()["assemblies"]}
    a2 = states.get(("a2", "running")) or states.get(("a2", "stopping"))
    slow = a2 and {r["name"]: r["state"] for r in a2["resources"]}.get("slow")
    return ("a1", "stopped") in states and slow == "stopping"


def test_a_running_deployable_is_deleted_only_with_force(rig: Rig) -> None:
    rig.client.put_deployable("shop", shop("a1"))
    rig.client.start_deployable("shop")
    rig.running()
    with pytest.raises(Conflict, match="running"):
        rig.client.delete_deployable("shop")
    rig.client.delete_deployable("shop", force=True)
    assert rig.processes() == {}
    assert [row["name"] for row in rig.client.list_deployables()] == []


def test_start_clears_a_failed_deployable(rig: Rig) -> None:
    once = {"failures": 1, "period": 600}
    document = shop("a1") | {"escalation": once}
    document["assemblies"][0]["escalation"] = once
    rig.client.put_deployable("shop", document)
    rig.client.start_deployable("shop")
    before = rig.running()
    guest_init = [pid for pid, argv in rig.processes().items() if "_guest_init.py" in str(argv)]
    assert len(guest_init) == 1
    os.kill(guest_init[0], signal.SIGKILL)  # the instance dies: escalated up to the deployable
    rig.until(lambda: rig.status()["state"] == "failed", what="shop failed")
    failed_pid = rig.status()["dpe"]["pid"]
    assert failed_pid == before["dpe"]["pid"]  # a failed deployable keeps its DPE

    answer = rig.client.start_deployable("shop")
    assert answer["pid"] not in (None, failed_pid)
    after = rig.running()
    assert after["dpe"]["lease_epoch"] > before["dpe"]["lease_epoch"]
    assert any(
        kind == "dpe-killed" and "the deployable had failed" in why
        for kind, why in rig.dpe_events()
    )


def test_a_daemonized_cped_runs_deployables(pcloud_home: Paths, key_cache: Path) -> None:
    shutil.copytree(key_cache, pcloud_home.keys_dir, dirs_exist_ok=True)
    pcloud_home.config_file.write_text(CONFIG)
    pid = control.start_daemon(pcloud_home)
    client = Client(pcloud_home.socket, timeout=10.0)
    try:
        client.put_deployable("shop", shop("a1"))
        started = client.start_deployable("shop")
        deadline = time.monotonic() + 15
        while client.deployable_status("shop")["state"] != "running":
            assert time.monotonic() < deadline, "shop not running under a daemonized cped"
            time.sleep(0.05)
        assert command_line(started["pid"]) is not None
        assert os.getsid(started["pid"]) == started["pid"]
        log = (pcloud_home.log_dir / "dped-shop.log").read_text()
        assert f"dped[{started['pid']}]" in log
        assert client.stop_deployable("shop")["state"] == "stopped"
    finally:
        with contextlib.suppress(PcloudError):
            client.stop_deployable("shop")
        control.stop_daemon(pcloud_home)
    assert not process_alive(pid)
