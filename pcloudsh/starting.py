"""Starting many deployables with one command, and waiting until they run.

``deployable_start --all`` asks cped to start every deployable, one request
each (cped answers at once; it lets a few start at a time and queues the
rest), and ``--wait`` follows the deployables' states from cped's list until
each is running or has failed, showing how many are running so far.

A deployable that had failed before this start is counted as failed only
once it has been seen in another state first: cped starts it again with a
new DPE, and its old state stays in the list until that DPE records anew.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from foundation.errors import PcloudError
from pcloudsh.api import Api

RUNNING = "running"
FAILED = "failed"
POLL = 1.0  # seconds between two looks at cped's list while waiting


@dataclass
class Started:
    answers: dict[str, Any] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # name -> cped's message


def start_each(api: Api, names: Iterable[str]) -> Started:
    """One start request per deployable; a refusal is noted and the others go on."""
    started = Started()
    for name in names:
        try:
            started.answers[name] = api.start_deployable(name)
        except PcloudError as error:
            started.refused[name] = error.message
    return started


@dataclass
class Waiting:
    """What is known of the deployables waited for, poll after poll."""

    names: Sequence[str]
    stale_failed: set[str]  # failed before this start: not final until seen otherwise
    states: dict[str, str] = field(default_factory=dict)

    def update(self, rows: Iterable[dict[str, Any]]) -> None:
        wanted = set(self.names)
        for row in rows:
            name = row.get("name")
            if name in wanted:
                state = str(row.get("state", ""))
                self.states[name] = state
                if state != FAILED:
                    self.stale_failed.discard(name)

    @property
    def running(self) -> list[str]:
        return [n for n in self.names if self.states.get(n) == RUNNING]

    @property
    def failed(self) -> list[str]:
        return [
            n for n in self.names if self.states.get(n) == FAILED and n not in self.stale_failed
        ]

    @property
    def over(self) -> bool:
        return len(self.running) + len(self.failed) == len(self.names)


Progress = Callable[[int, int], None]  # (running, failed)


def wait_until_settled(
    api: Api,
    waiting: Waiting,
    timeout: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    progress: Progress,
) -> float:
    """Poll cped's list until every deployable runs or failed, or ``timeout``;
    the seconds waited."""
    started = clock()
    while True:
        waiting.update(api.list_deployables())
        progress(len(waiting.running), len(waiting.failed))
        waited = clock() - started
        if waiting.over or waited >= timeout:
            return waited
        sleep(min(POLL, max(0.0, timeout - waited)))


def failed_before(api: Api, names: Sequence[str]) -> set[str]:
    wanted = set(names)
    return {
        r["name"]
        for r in api.list_deployables()
        if r["name"] in wanted and r.get("state") == FAILED
    }
