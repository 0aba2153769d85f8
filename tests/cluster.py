"""Several real cped members on one real PostgreSQL store, for tests, soak and benchmarks.

``ClusterRig`` starts members (``cped --foreground``), each with its own
short ``PCLOUD_HOME``, the same store URL and cluster key, and one shared
directory of local-driver instances (the local driver's "cloud": every
member lists and adopts the same guests).  Only the first member's key
directory holds the assemblies' keys; the others get them through the store.
With ``netns`` a member runs in its own network namespace (``ip netns exec``;
see ``tests/netns_rig.py``); ``partition``/``heal`` are then its link going
down and up.

Everything is found and stopped by pid: ``kill(member)`` SIGKILLs the
member's cped and its dpeds (the processes whose environment names its home),
never the guests; ``close()`` stops deployables, then kills whatever is left
of the members and of the guests (found by the shared instances directory in
their command line).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cpe.client import Client
from cpe.control import cped_command, cped_environment, process_alive
from cpe.dpe_process import DPED_MARKERS, command_line
from cpe.membership import rendezvous_owner
from foundation.errors import PcloudError
from foundation.paths import Paths, resolve
from tests.postgres import write_cluster_key
from tests.processes import kill_until_gone

START_TIMEOUT = 20.0


def member_config(
    store: str, key_file: Path, name: str, instances: Path, extra: dict[str, dict[str, str]]
) -> str:
    sections: dict[str, dict[str, str]] = {
        "cped": {"store": store, "key_file": str(key_file), "member": name},
        "dped": {"local_instances_dir": str(instances)},
    }
    for section, values in extra.items():
        sections.setdefault(section, {}).update(values)
    return "".join(
        f"[{section}]\n" + "".join(f"{k} = {v}\n" for k, v in values.items())
        for section, values in sections.items()
    )


@dataclass
class Member:
    name: str
    paths: Paths
    netns: str = ""
    proc: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)
    client_factory: Callable[[Member], Client] | None = None

    @property
    def home(self) -> str:
        return str(self.paths.config_dir.parent)

    @property
    def client(self) -> Client:
        if self.client_factory is not None:
            return self.client_factory(self)
        return Client(self.paths.socket, timeout=10.0)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    partitioned: bool = False

    def spawn(self) -> None:
        log_file = self.paths.state_dir / f"cped-test-{len(self.logs)}.log"
        self.logs.append(log_file)
        # nsenter joins the network namespace only (ip netns exec would give cped a
        # mount namespace of its own, hiding the guests' namespace names it creates)
        prefix = ["nsenter", f"--net=/run/netns/{self.netns}", "--"] if self.netns else []
        with log_file.open("wb") as out:
            self.proc = subprocess.Popen(
                [*prefix, *cped_command(), "--foreground"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env=cped_environment(self.paths),
            )

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"cped {self.name} exited: {self.log()[-3000:]}")
            with contextlib.suppress(PcloudError):
                if self.client.health()["pid"] == self.proc.pid:
                    return
            time.sleep(0.05)
        raise AssertionError(f"cped {self.name} did not answer: {self.log()[-3000:]}")

    def dpeds(self) -> dict[int, str]:
        """This member's live dped processes: pid -> deployable."""
        found = {}
        for pid, argv in _processes():
            is_dped = any(Path(word).name in DPED_MARKERS for word in argv[:4])
            if is_dped and _has_home(pid, self.home):
                found[pid] = argv[-1]
        return found

    def kill(self) -> list[int]:
        """SIGKILL cped and its dpeds (by pid); the pids killed."""
        victims = [self.proc.pid] if self.pid is not None and self.proc is not None else []
        victims += list(self.dpeds())
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)
        return victims

    def stop(self, timeout: float = 20.0) -> None:
        if self.pid is not None and self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def dped_log(self, deployable: str) -> str:
        try:
            return (self.paths.log_dir / f"dped-{deployable}.log").read_text(errors="replace")
        except OSError:
            return ""


class ClusterRig:
    def __init__(
        self,
        store_url: str,
        key_cache: Path,
        settings: dict[str, dict[str, str]] | None = None,
        per_member: Callable[[str, Paths], dict[str, dict[str, str]]] | None = None,
    ) -> None:
        self.store_url = store_url
        self.key_cache = key_cache
        self.settings = settings or {}
        self.per_member = per_member  # settings of one member (its listener, its URL)
        self.root = Path(tempfile.mkdtemp(prefix="pc-cl-", dir="/tmp"))
        self.instances = self.root / "instances"
        self.instances.mkdir()
        self.key_file = write_cluster_key(self.root / "cluster.key")
        self.members: dict[str, Member] = {}

    # -- members ------------------------------------------------------------------

    def add(self, name: str, *, netns: str = "", keys: bool | None = None) -> Member:
        """A member (not started); the first one gets the assemblies' keys."""
        home = Path(tempfile.mkdtemp(prefix=f"pc-{name}-", dir="/tmp"))
        paths = resolve({"PCLOUD_HOME": str(home)})
        paths.ensure()
        if keys if keys is not None else not self.members:
            shutil.copytree(self.key_cache, paths.keys_dir, dirs_exist_ok=True)
        settings = {section: dict(values) for section, values in self.settings.items()}
        for section, values in (self.per_member(name, paths) if self.per_member else {}).items():
            settings.setdefault(section, {}).update(values)
        paths.config_file.write_text(
            member_config(self.store_url, self.key_file, name, self.instances, settings)
        )
        member = Member(name, paths, netns)
        self.members[name] = member
        return member

    def start(self, name: str, **options: Any) -> Member:
        member = self.members.get(name) or self.add(name, **options)
        member.spawn()
        member.wait_healthy()
        return member

    def alive(self) -> list[Member]:
        """Members whose cped runs and reaches the store (not partitioned)."""
        return [m for m in self.members.values() if m.pid is not None and not m.partitioned]

    def any(self) -> Member:
        return self.alive()[0]

    # -- what runs where ------------------------------------------------------------

    def status(self, deployable: str) -> dict[str, Any]:
        return self.any().client.deployable_status(deployable)

    def owner(self, deployable: str, among: list[str] | None = None) -> str:
        members = among or [m.name for m in self.alive()]
        owner = rendezvous_owner(deployable, members)
        assert owner is not None
        return owner

    def dpeds(self, deployable: str) -> list[tuple[str, int]]:
        """(member, pid) of every live dped of ``deployable``, on any member."""
        return [
            (member.name, pid)
            for member in self.members.values()
            for pid, name in member.dpeds().items()
            if name == deployable
        ]

    def guest_inits(self, deployable: str | None = None) -> dict[str, list[int]]:
        """assembly -> pids of its live guest inits (from the guests' own processes)."""
        found: dict[str, list[int]] = {}
        where = str(self.instances / (deployable or ""))
        for pid, argv in _processes():
            line = " ".join(argv)
            if "_guest_init.py" in line and where in line:
                record = argv[argv.index("--record") + 1]
                found.setdefault(Path(record).parent.parent.name, []).append(pid)
        return found

    def running(
        self, deployable: str, within: float = 30.0, after_epoch: int = 0
    ) -> dict[str, Any]:
        """Until every part of ``deployable`` runs under the DPE that holds its lease now
        (a lease epoch above ``after_epoch``: a new DPE's)."""
        return dict(
            self.until(lambda: self.is_running(deployable, after_epoch), within, deployable)
        )

    def is_running(self, deployable: str, after_epoch: int = 0) -> dict[str, Any] | None:
        """The status, if every part runs under a DPE of epoch above ``after_epoch`` that
        recorded it so itself; else None."""
        status = self.status(deployable)
        resources = [r for a in status["assemblies"] for r in a["resources"]]
        states = {status["state"], *(a["state"] for a in status["assemblies"])}
        states |= {r["state"] for r in resources}
        dpe = status["dpe"]
        if states != {"running"} or not dpe["alive"] or dpe["lease_holder"] is None:
            return None
        if dpe["lease_epoch"] <= after_epoch:
            return None
        return status if self.recorded_by(deployable, dpe["lease_epoch"]) else None

    def recorded_by(self, deployable: str, epoch: int) -> bool:
        events = self.events(deployable)
        mine = [e for e in events if e["assembly"] is None and not e["state"].startswith("dpe-")]
        begun = [
            i for i, e in enumerate(mine) if e["reason"] == f"engine started (lease epoch {epoch})"
        ]
        return bool(begun) and any(e["state"] == "running" for e in mine[begun[-1] :])

    def events(self, deployable: str | None = None, after: int = 0) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        client = self.any().client
        while page := client.query_events(
            deployable=deployable, after_id=events[-1]["id"] if events else after, limit=1000
        ):
            events += page
        return events

    def until(self, condition: Callable[[], Any], within: float, what: str = "") -> Any:
        deadline = time.monotonic() + within
        while True:
            with contextlib.suppress(PcloudError, IndexError):
                value = condition()
                if value:
                    return value
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {m.name}\n{m.log()[-2500:]}" for m in self.members.values())
                raise AssertionError(f"not within {within:g} s: {what}\n{logs}")
            time.sleep(0.05)

    # -- the end ---------------------------------------------------------------------

    def close(self) -> None:
        with contextlib.suppress(PcloudError, IndexError, AssertionError):
            client = self.any().client
            for row in client.list_deployables():
                with contextlib.suppress(PcloudError):
                    client.stop_deployable(row["name"], wait=30)
        for member in self.members.values():
            member.kill()
        self._kill_guests()
        for member in self.members.values():
            shutil.rmtree(member.home, ignore_errors=True)
        shutil.rmtree(self.root, ignore_errors=True)

    def _kill_guests(self) -> None:
        mark = str(self.instances)
        kill_until_gone(lambda: [pid for pid, argv in _processes() if mark in " ".join(argv)])


def _processes() -> Iterator[tuple[int, list[str]]]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            pid = int(entry.name)
            argv = command_line(pid)
            if argv and process_alive(pid):
                yield pid, argv


def _has_home(pid: int, home: str) -> bool:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"PCLOUD_HOME={home}".encode() in environ.split(b"\0")
