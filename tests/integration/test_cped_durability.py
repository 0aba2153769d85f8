"""Durability: a write acknowledged (HTTP response received, or Store call returned)
survives a kill -9 of the process that made it."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from cpe.client import Client
from cpe.control import cped_environment
from foundation.errors import PcloudError
from foundation.paths import Paths
from tests.integration.conftest import CpedProcess

pytestmark = pytest.mark.integration

THREADS = 4
PROCESSES = 2

# A separate writer process: creates assemblies until cped goes away, printing
# each name once its response has arrived.
API_WRITER = """
import sys
from cpe.client import Client
from foundation.errors import PcloudError
client = Client(sys.argv[1], timeout=5)
n = 0
while True:
    name = f"{sys.argv[2]}-{n}"
    try:
        client.create_assembly({"name": name})
    except PcloudError:
        break
    print(name, flush=True)
    n += 1
"""

# A dped-like process appending events straight into the store, printing each
# id once append_event has returned.
STORE_WRITER = """
import sys, time
from foundation.events import Event
from foundation.store import Store
store = Store.open(__import__("pathlib").Path(sys.argv[1]))
while True:
    event = store.append_event(Event(time.time(), "d", "running", "durability test"))
    print(event.id, flush=True)
"""


def thread_writer(client: Client, prefix: str, acked: list[str], stop: threading.Event) -> None:
    n = 0
    while not stop.is_set():
        name = f"{prefix}-{n}"
        try:
            client.create_assembly({"name": name})
        except PcloudError:
            return
        acked.append(name)
        n += 1


def start_process(code: str, paths: Paths, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=cped_environment(paths),
    )


def collect_lines(proc: subprocess.Popen[str], lines: list[str]) -> None:
    assert proc.stdout is not None
    with proc.stdout:
        lines.extend(line.strip() for line in proc.stdout)


def test_acknowledged_api_writes_survive_kill_9_of_cped(cped: CpedProcess) -> None:
    stop = threading.Event()
    acked: list[list[str]] = [[] for _ in range(THREADS + PROCESSES)]
    writers = [
        threading.Thread(
            target=thread_writer,
            args=(Client(cped.paths.socket, timeout=5), f"t{i}", acked[i], stop),
        )
        for i in range(THREADS)
    ]
    procs = [
        start_process(API_WRITER, cped.paths, str(cped.paths.socket), f"p{i}")
        for i in range(PROCESSES)
    ]
    writers += [
        threading.Thread(target=collect_lines, args=(proc, acked[THREADS + i]))
        for i, proc in enumerate(procs)
    ]
    try:
        for writer in writers:
            writer.start()
        deadline = time.monotonic() + 15
        while min(map(len, acked)) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        cped.kill()  # SIGKILL in the middle of the burst
    finally:
        stop.set()
        for proc in procs:
            proc.wait(10)
        for writer in writers:
            writer.join(10)
    assert min(map(len, acked)) >= 20, "every writer must have had writes acknowledged"
    acknowledged = [name for names in acked for name in names]
    cped.start()
    stored = {row["name"] for row in cped.client.list_assemblies()}
    missing = [name for name in acknowledged if name not in stored]
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"
    with sqlite3.connect(cped.paths.store_file) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_acknowledged_events_survive_kill_9_of_their_writer(cped: CpedProcess) -> None:
    writer = start_process(STORE_WRITER, cped.paths, str(cped.paths.store_file))
    assert writer.stdout is not None
    acknowledged = [int(writer.stdout.readline()) for _ in range(300)]
    writer.send_signal(signal.SIGKILL)
    rest, _ = writer.communicate(timeout=10)
    acknowledged += [int(line) for line in rest.split()]
    stored: set[int] = set()
    after = 0
    while page := cped.client.query_events(deployable="d", after_id=after, limit=1000):
        stored |= {e["id"] for e in page}
        after = page[-1]["id"]
    assert set(acknowledged) <= stored
