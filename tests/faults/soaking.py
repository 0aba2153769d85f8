"""Short and long forms of the fault tests, and what they report.

``make test`` runs every fault test in its short form (seconds to a minute).
With ``PCLOUD_SOAK=1`` (set by ``python -m soak.run``, ``make soak``) the same
tests run their long form: more kills, a longer failure storm.  When
``PCLOUD_SOAK_RECORD`` names a file, each test appends one JSON line to it:
the faults it injected, the invariants it checked, the violations it saw and
any samples (RSS, CPU); the soak runner turns those lines into its report.

``Sampler`` reads a set of processes' resident memory and CPU time from
``/proc`` at a fixed period, in a thread, for the memory and CPU bounds.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.faults.conftest import cpu_seconds

SOAK = os.environ.get("PCLOUD_SOAK", "") == "1"
RECORD = os.environ.get("PCLOUD_SOAK_RECORD", "")


def long_or_short(long: float, short: float) -> float:
    return long if SOAK else short


@dataclass
class Tally:
    """What one fault test did: faults by kind, invariants checked, violations."""

    test: str
    faults: dict[str, int] = field(default_factory=dict)
    checks: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def fault(self, kind: str, count: int = 1) -> None:
        self.faults[kind] = self.faults.get(kind, 0) + count

    def check(self, invariant: str, holds: bool, detail: str = "") -> bool:
        """Count one check of ``invariant``; a violation is kept with ``detail``."""
        self.checks[invariant] = self.checks.get(invariant, 0) + 1
        if not holds:
            self.violations.append(f"{invariant}: {detail}" if detail else invariant)
        return holds

    def save(self) -> None:
        """Append this tally to the soak record, if there is one."""
        if not RECORD:
            return
        line = {
            "test": self.test,
            "soak": SOAK,
            "faults": self.faults,
            "checks": self.checks,
            "violations": self.violations,
            "figures": self.figures,
        }
        with open(RECORD, "a") as out:
            out.write(json.dumps(line, sort_keys=True) + "\n")


# ---------------------------------------------------------------------------
# memory and CPU of processes


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


@dataclass
class Sample:
    at: float  # seconds since the sampler started
    rss_kib: int
    cpu_s: float


class Sampler:
    """Samples ``pids()`` (re-read each time: a process may be replaced) every
    ``period`` seconds; RSS and CPU are summed over them."""

    def __init__(self, pids: Callable[[], list[int]], period: float = 2.0) -> None:
        self.pids = pids
        self.period = period
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = 0.0

    def __enter__(self) -> Sampler:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self._take()
            if self._stop.wait(self.period):
                self._take()
                return

    def _take(self) -> None:
        rss, cpu = 0, 0.0
        try:
            for pid in self.pids():
                rss, cpu = rss + rss_kib(pid), cpu + cpu_seconds(pid)
        except (OSError, ValueError, IndexError):
            return  # a process went away between listing and reading: skip this one
        self.samples.append(Sample(round(time.monotonic() - self._started, 2), rss, cpu))

    def cpu_fraction(self) -> float:
        """CPU used over the sampled span but its first quarter (warm-up: the
        process starting), as a fraction of one core."""
        first, last = self.samples[len(self.samples) // 4], self.samples[-1]
        return (last.cpu_s - first.cpu_s) / max(last.at - first.at, 1e-9)

    def rss_growth_kib(self) -> int:
        """Median RSS of the last quarter minus that of the second quarter (the
        first quarter is warm-up: caches, connections, agents' first runs)."""
        rss = [s.rss_kib for s in self.samples]
        quarter = max(len(rss) // 4, 1)
        return _median(rss[-quarter:]) - _median(rss[quarter : 2 * quarter] or rss[:1])

    def to_dict(self) -> list[list[float]]:
        return [[s.at, s.rss_kib, round(s.cpu_s, 3)] for s in self.samples]


def _median(values: list[int]) -> int:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]
