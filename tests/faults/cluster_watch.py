"""Watching a cluster from outside while faults are injected.

``Watch`` samples, in a thread, every ``period`` seconds:

- per deployable, the DPEs that act: live dped processes (any member) that
  logged taking the lease (``engine started (lease epoch N)``) and have not
  yet logged the end of their acting (``acting no more`` when fenced,
  ``stopped acting`` before a release, the watchdog's last words) -- at most
  one at every sample;
- per assembly, the live instances, counted from the guests' own processes
  -- at most one at every sample.

Logs are read incrementally (each member's ``dped-NAME.log``, which every
dped of that member for that deployable appends to).  Zero of either is
allowed in passing (an adoption, a re-creation); the test checks for exactly
one at its settle points.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from cpe.control import process_alive
from tests.cluster import ClusterRig

LINE = re.compile(r"dped\[(\d+)\]")
STARTED = "engine started (lease epoch"
ENDED = ("acting no more", "stopped acting (lease epoch", "ending the process so that it acts")


@dataclass
class LogState:
    offset: int = 0
    acting: set[int] = field(default_factory=set)
    ended: set[int] = field(default_factory=set)


class Watch:
    def __init__(self, cluster: ClusterRig, deployables: list[str], period: float = 0.25):
        self.cluster = cluster
        self.deployables = deployables
        self.period = period
        self.samples = 0
        self.violations: list[str] = []
        self._logs: dict[Path, LogState] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cluster-watch", daemon=True)
        self.started = time.monotonic()

    def __enter__(self) -> Watch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def acting(self, deployable: str) -> list[tuple[str, int]]:
        """(member, pid) of every DPE of ``deployable`` that acts now."""
        found = []
        for member in self.cluster.members.values():
            path = member.paths.log_dir / f"dped-{deployable}.log"
            state = self._read(path)
            found += [(member.name, pid) for pid in state.acting if process_alive(pid)]
        return found

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.sample()

    def sample(self) -> None:
        at = round(time.monotonic() - self.started, 2)
        for name in self.deployables:
            acting = self.acting(name)
            if len(acting) > 1:
                self.violations.append(f"{at} s: {name} has {len(acting)} acting DPEs {acting}")
        for assembly, pids in self.cluster.guest_inits().items():
            if len(pids) > 1:
                self.violations.append(f"{at} s: assembly {assembly} has instances {pids}")
        self.samples += 1

    def _read(self, path: Path) -> LogState:
        state = self._logs.setdefault(path, LogState())
        try:
            with path.open("rb") as log:
                log.seek(state.offset)
                data = log.read()
        except OSError:
            return state
        complete = data[: data.rfind(b"\n") + 1]
        state.offset += len(complete)
        for line in complete.decode(errors="replace").splitlines():
            self._note(state, line)
        return state

    @staticmethod
    def _note(state: LogState, line: str) -> None:
        found = LINE.search(line)
        if found is None:
            return
        pid = int(found.group(1))
        if STARTED in line and pid not in state.ended:
            state.acting.add(pid)
        elif any(marker in line for marker in ENDED):
            state.acting.discard(pid)
            state.ended.add(pid)
