"""One deployable's DPE as cped's supervisor keeps it: its ``Slot`` and states.

Also the seams the supervisor drives DPEs through (``Launcher`` starts or
watches a ``DpeProcess``) and its options (``[cped]`` and ``[dped]`` settings).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from cpe.dpe_scheduling import Doubt, Scheduling
from foundation.backoff import Backoff
from foundation.config import Config

ExitCallback = Callable[[int | None], None]
STARTED = "started"  # the desired state of a deployable that should run
ELSEWHERE = "elsewhere"  # run by another member: nothing to do here


class DpeProcess(Protocol):
    pid: int
    child: bool  # a child of this cped (its exit status is known)

    def signal(self, signum: int) -> bool:
        """Send ``signum``; False if the process has already exited."""
        ...

    def detach(self) -> None:
        """Stop watching it; it keeps running."""
        ...

    def scheduling(self) -> Scheduling | None:
        """The kernel's view of it now (None: gone, or not known)."""
        ...

    def running_for(self) -> float | None:
        """Seconds since it started (None: gone, or not known): an adopted DPE's
        uptime is its own, not the time since this cped found it."""
        ...


class Launcher(Protocol):
    def spawn(
        self,
        deployable: str,
        *,
        clear_failed: bool,
        on_exit: ExitCallback,
        stop_only: bool = False,
    ) -> DpeProcess:
        """Start a DPE in a session of its own (OSError if it cannot start);
        ``stop_only``: one that stops what a previous DPE left, then exits."""
        ...

    def attach(self, deployable: str, pid: int, on_exit: ExitCallback) -> DpeProcess | None:
        """Watch a running DPE of ``deployable``; None if ``pid`` is not one
        (OSError if it is one but cannot be watched)."""
        ...

    def last_words(self, deployable: str) -> str:
        """The last line a DPE of ``deployable`` wrote to its log ("" if none)."""
        ...


# dped's exit code for bad usage or an invalid document (``dpe.dped_process.ExitCode.USAGE``):
# a new DPE would refuse the same configuration again.
REFUSED_CONFIGURATION = 2


class DpeState(StrEnum):
    STOPPED = "stopped"  # no DPE
    QUEUED = "queued"  # no DPE yet: waiting for its turn to start one (``cpe.dpe_admission``)
    STARTING = "starting"  # a DPE runs but does not hold the lease yet
    RUNNING = "running"  # a DPE holds the lease
    STOPPING = "stopping"  # told to stop the deployable (SIGTERM); SIGKILL at kill_at
    BACKOFF = "backoff"  # the DPE died; the next one is due at retry_at


@dataclass(frozen=True)
class SupervisorOptions:
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    healthy_after: float = 10.0  # a DPE that ran this long resets the back-off
    lease_ttl: float = 5.0
    lease_renew: float = 1.0
    stop_timeout: float = 60.0  # how long a DPE may take to stop before SIGKILL
    stop_attempts: int = 3  # DPEs run to stop instances left behind, before giving up
    refusal_attempts: int = 3  # DPEs in a row that refuse their configuration, before giving up
    python_start: float = 10.0  # allowance for a DPE's start before it can take a lease
    starts_at_once: int = 8  # deployables starting at once; the others wait their turn
    start_turn: float = 120.0  # the longest one start keeps its turn
    idle_look: float = 60.0  # with nothing due, the supervisor still looks this often
    handover_timeout: float = 15.0  # how long a DPE may take to hand over before SIGKILL

    @classmethod
    def from_config(cls, config: Config) -> SupervisorOptions:
        return cls(
            backoff_initial=config.cped.dpe_backoff_initial,
            backoff_max=config.cped.dpe_backoff_max,
            lease_ttl=config.cped.lease_ttl,
            lease_renew=config.dped.lease_renew_interval,
            starts_at_once=config.cped.dpe_starts_at_once,
            start_turn=config.cped.dpe_start_turn,
        )

    @property
    def check_interval(self) -> float:
        """The slack given a lease past its expiry, and how often a starting DPE's
        lease is looked at when no wake-up said it was taken."""
        return min(0.5, self.lease_ttl / 4)

    @property
    def start_grace(self) -> float:
        """How long a new DPE may take to hold its lease (dped waits ttl + 2 renewals)."""
        return self.lease_ttl + 2 * self.lease_renew + self.python_start

    @property
    def confirm_after(self) -> float:
        """The time a DPE late with its lease must have been able to run before it is
        killed: two renewals and a look."""
        return 2 * self.lease_renew + self.check_interval

    @property
    def doubt_limit(self) -> float:
        """The longest a DPE late with its lease is waited for while it cannot run
        (stopped, or starved of CPU): then it is killed all the same."""
        return 6 * self.lease_ttl

    @property
    def backoff(self) -> Backoff:
        """The delay before restart number ``attempt`` (1, 2, ...): ``backoff.delay(attempt)``."""
        return Backoff(self.backoff_initial, self.backoff_max)


@dataclass
class Slot:
    """One deployable's DPE, as the supervisor keeps it."""

    name: str
    state: DpeState = DpeState.STOPPED
    process: DpeProcess | None = None
    generation: int = 0  # which process an exit report is about
    since: float = 0.0  # monotonic time the process was spawned or adopted
    started: float = 0.0  # monotonic time the process started (before, if adopted)
    epoch: int | None = None  # its lease epoch, once it holds the lease
    attempts: int = 0  # consecutive failed runs
    refusals: int = 0  # consecutive DPEs that exited refusing their configuration
    gave_up: bool = False  # marked failed for its configuration: no DPE until started again
    retry_at: float = 0.0
    since_stop: float = 0.0  # when SIGTERM was sent
    kill_at: float = 0.0
    killed: bool = False  # SIGKILL sent to the current process
    replace: bool = False  # killed on purpose: the replacement starts at once
    clear_failed: bool = False  # a start request: the next DPE clears "failed"
    spawned_clearing: bool = False  # the current process was started with --clear-failed
    reload_pending: bool = False  # SIGHUP once the starting DPE holds its lease
    requests_pending: bool = False  # SIGUSR2 (read cped's requests) once it holds it
    check_left: bool = False  # look for instances left behind when no DPE runs
    stop_timeout: float | None = None  # this stop request's own SIGKILL deadline
    here: bool = True  # this member runs the deployable (else: elsewhere)
    handing_over: bool = False  # told to hand over (SIGUSR1)
    last: dict[str, Any] = field(default_factory=dict)  # the last DPE: pid, exit, killed
    waiting_note: str = ""  # why no DPE is started (logged once)
    lease_due: float = 0.0  # wall time by which its DPE must have renewed the lease again
    held_until: float = 0.0  # wall time another's lease, which a start waits for, expires
    doubt: Doubt | None = None  # its DPE is late (lease or start): could it run?
    starts: list[asyncio.Future[dict[str, Any]]] = field(default_factory=list)
    stops: list[asyncio.Future[dict[str, Any]]] = field(default_factory=list)

    def stopped_answer(self, left: list[str]) -> dict[str, Any]:
        """What a stop request is told: the last DPE, and what is left running."""
        return {**self.last, "left": left} if self.last else {"pid": None, "left": left}


def settle(waiters: list[asyncio.Future[dict[str, Any]]], answer: dict[str, Any]) -> None:
    """Answer every request still waiting."""
    for future in waiters:
        if not future.done():
            future.set_result(dict(answer))
    waiters.clear()
