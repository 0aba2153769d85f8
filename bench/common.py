"""What the benchmark modules share: statistics, the machine, a cped of their own.

``Cped`` runs ``cped --foreground`` on a temporary ``PCLOUD_HOME`` (short, under
``/tmp``: UNIX socket paths are limited), stops it by pid, and on the way out
stops every deployable it ran and kills, by pid, anything of that home that is
left (DPEs, local guests, agents).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cpe.client import Client
from cpe.control import cped_command, cped_environment
from dpe.drivers.local import LocalDriver
from foundation.errors import PcloudError
from foundation.keyfiles import key_paths
from foundation.model import Deployable
from foundation.paths import Paths, resolve
from foundation.store import Store
from images.keys import write_assembly_keys

RESULTS_DIR = Path(__file__).parent / "results"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def stats(values: list[float], digits: int = 6) -> dict[str, Any]:
    """Median and p95 (nearest rank) of repeated measurements, with the count."""
    ordered = sorted(values)
    if not ordered:
        return {"n": 0}
    rank = max(0, min(len(ordered) - 1, round(0.95 * len(ordered) + 0.5) - 1))
    return {
        "n": len(ordered),
        "median": round(statistics.median(ordered), digits),
        "p95": round(ordered[rank], digits),
        "min": round(ordered[0], digits),
        "max": round(ordered[-1], digits),
    }


def timed_calls(call: Callable[[], object], seconds: float) -> list[float]:
    """``call`` again and again for ``seconds``: each call's latency, in seconds."""
    latencies = []
    deadline = time.perf_counter() + seconds
    while (start := time.perf_counter()) < deadline:
        call()
        latencies.append(time.perf_counter() - start)
    return latencies


def machine() -> dict[str, Any]:
    """The facts that change every figure: cores and what else is running."""
    one, five, _ = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "load_average_1min": round(one, 2),
        "load_average_5min": round(five, 2),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far (from ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def pss_bytes(pid: int) -> int:
    """Proportional set size: shared pages (libraries) divided among their users."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return 0


def command_line(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [word.decode(errors="replace") for word in raw.split(b"\0") if word]


def until(condition: Callable[[], Any], within: float, what: str, poll: float = 0.05) -> Any:
    """Poll ``condition`` until it is true (errors from cped count as not yet)."""
    deadline = time.monotonic() + within
    while True:
        with contextlib.suppress(PcloudError):
            value = condition()
            if value:
                return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {within:g} s: {what}")
        time.sleep(poll)


def dummy_deployable(name: str, assemblies: list[str], resources: int, monitor: float) -> Any:
    """A document: each assembly runs ``resources`` Dummy resources."""
    return {
        "name": name,
        "assemblies": [
            {
                "name": assembly,
                "resources": [
                    {"name": f"d{i}", "type": "Dummy", "monitor_interval": monitor}
                    for i in range(resources)
                ],
            }
            for assembly in assemblies
        ],
    }


class Cped:
    """A cped of the benchmark's own on a temporary home."""

    def __init__(self, config: str = "", *, stop_deployables: bool = True) -> None:
        self.stop_deployables = stop_deployables  # False: everything is killed by pid
        self.home = Path(tempfile.mkdtemp(prefix="pc-b-", dir="/tmp"))
        self.paths: Paths = resolve({"PCLOUD_HOME": str(self.home)})
        self.paths.ensure()
        if config:
            self.paths.config_file.write_text(config)
        self.client = Client(self.paths.socket, timeout=30.0)
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Cped:
        log = (self.paths.state_dir / "cped-bench.log").open("wb")
        self.proc = subprocess.Popen(
            [*cped_command(), "--foreground"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=cped_environment(self.paths),
        )
        until(lambda: self.client.health()["pid"] == self.pid, 15.0, "cped answers", 0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def keys(self, assemblies: list[str]) -> None:
        """Give every assembly a key pair: one is made, the others are copies
        (key generation is not what is measured)."""
        if not assemblies:
            return
        write_assembly_keys(self.paths.keys_dir, assemblies[0])
        made = key_paths(self.paths.keys_dir, assemblies[0])
        for other in assemblies[1:]:
            for source, target in zip(made, key_paths(self.paths.keys_dir, other), strict=True):
                shutil.copy2(source, target)

    def processes(self) -> dict[int, list[str]]:
        """Every live process of this home but cped: DPEs, guests, agents."""
        found = {}
        marker = f"PCLOUD_HOME={self.home}".encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in (os.getpid(), self.pid):
                continue
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            argv = command_line(int(entry.name))
            if argv and (marker in environ or any(str(self.home) in w for w in argv)):
                found[int(entry.name)] = argv
        return found

    def dpeds(self) -> list[int]:
        return [
            pid
            for pid, argv in self.processes().items()
            if any(Path(word).name in ("dped", "dpe.main") for word in argv[:4])
        ]

    def close(self) -> None:
        with contextlib.suppress(PcloudError):
            for row in self.client.list_deployables() if self.stop_deployables else []:
                with contextlib.suppress(PcloudError):
                    self.client.stop_deployable(row["name"])
        self._stop_cped()
        self._kill_leftovers()
        shutil.rmtree(self.home, ignore_errors=True)

    def _stop_cped(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def _kill_leftovers(self) -> None:
        for _ in range(50):
            left = self.processes()
            if not left:
                return
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)


@contextlib.contextmanager
def timed() -> Iterator[list[float]]:
    """``with timed() as t: ...`` then ``t[0]`` is the wall time in seconds."""
    box: list[float] = []
    start = time.perf_counter()
    yield box
    box.append(time.perf_counter() - start)


def store_deployable(paths: Paths, document: Deployable) -> None:
    """Put ``document`` (with its assemblies) in the store, as cped's import does."""
    store = Store.open(paths.store_file)
    try:
        doc = document.to_dict()
        doc["assemblies"] = [a.name for a in document.assemblies]
        store.insert_deployable(doc)
        for member in document.assemblies:
            store.insert_assembly(member.to_dict(), deployable=document.name)
    finally:
        store.close()


class EventBench:
    """A deployable run by one dped on local guests, timed by its events.

    Events are read in order from the store: ``seen`` is the last one looked at.
    """

    def __init__(self, paths: Paths, store: Store, name: str) -> None:
        self.paths = paths
        self.store = store
        self.name = name
        self.seen = 0

    def settle(self) -> None:
        """Let monitors and heartbeats run a while (a random while, so that kills do
        not always fall at the same point of their cycles); forget the events."""
        time.sleep(1.0 + random.uniform(0.0, 1.0))
        events = self.store.query_events(deployable=self.name, after_id=self.seen, limit=10_000)
        if events:
            self.seen = events[-1].id or self.seen

    def collect(
        self, matches: dict[str, Callable[[str], bool]], within: float = 60.0
    ) -> dict[str, tuple[float, str]]:
        """The time and text of the first new event matching each, read in order."""
        found: dict[str, tuple[float, str]] = {}
        deadline = time.monotonic() + within
        while len(found) < len(matches) and time.monotonic() < deadline:
            for event in self.store.query_events(
                deployable=self.name, after_id=self.seen, limit=10_000
            ):
                self.seen = event.id or self.seen
                line = f"{event.subject} {event.state}: {event.reason}"
                for key, match in matches.items():
                    if key not in found and match(line):
                        found[key] = (event.time, line)
                if len(found) == len(matches):
                    return found  # later events stay unread for the next wait
            time.sleep(0.005)
        missing = set(matches) - set(found)
        if missing:
            raise TimeoutError(f"no event for {', '.join(sorted(missing))}")
        return found

    def wait_event(self, match: Callable[[str], bool], within: float = 60.0) -> float:
        """The time of the first new event matching."""
        return self.collect({"event": match}, within)["event"][0]

    def instance(self, assembly: str) -> dict[str, str]:
        listed = asyncio.run(LocalDriver(self.paths, {}).list(self.name))
        return next(i.extra for i in listed if i.assembly == assembly)


def start_dped(paths: Paths, name: str) -> subprocess.Popen[bytes]:
    log = (paths.state_dir / "dped.log").open("wb")
    env = {**os.environ, "PCLOUD_HOME": str(paths.state_dir.parent)}
    command = [sys.executable, "-m", "dpe.main", "--foreground", name]
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, stderr=log, env=env)


def stop_dped(dped: subprocess.Popen[bytes]) -> None:
    dped.send_signal(signal.SIGTERM)
    try:
        dped.wait(30)
    except subprocess.TimeoutExpired:
        dped.kill()
        dped.wait()


async def destroy_all(paths: Paths, name: str) -> None:
    driver = LocalDriver(paths, {})
    for instance in await driver.list(name):
        await driver.destroy(instance.instance_id)


def resources_not_running(cped: Cped, names: list[str]) -> list[str]:
    """Every resource not running, as ``deployable/assembly/resource: state``."""
    found = []
    for name in names:
        status = cped.client.deployable_status(name)
        for assembly in status["assemblies"]:
            for resource in assembly["resources"]:
                if resource["state"] != "running":
                    found.append(
                        f"{name}/{assembly['name']}/{resource['name']}: {resource['state']}"
                    )
    return found


def thread_cpu_ns(pid: int) -> int:
    """Nanoseconds on a CPU of every live thread of ``pid`` (schedstat's first field)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except OSError:
            continue
    return total


def add_jeos_arguments(parser: argparse.ArgumentParser) -> None:
    """``--jeos-dir`` (where ``images.jeos.build_jeos`` put it) and ``--jeos``."""
    parser.add_argument("--jeos-dir", type=Path, required=True)
    parser.add_argument("--jeos", default="base")


def write_report(out: Path, report: dict[str, Any]) -> None:
    """The result as JSON in ``out`` (its directory made) and on standard output."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
