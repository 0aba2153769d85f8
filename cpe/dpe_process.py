"""DPE processes as the supervisor sees them: spawned, adopted, watched, signalled.

``DpedLauncher.spawn`` starts ``dped --foreground DEPLOYABLE`` in a session of
its own (``setsid``), standard input from ``/dev/null`` and standard output
and error appended to ``STATE/log/dped-DEPLOYABLE.log``, under the environment
that resolves cped's own paths.  With a template (``cpe.dpe_template``, the
daemon's way) the dped is forked from a process that has imported dped once,
so the interpreter's and the libraries' pages are shared by every dped;
without one, or while the template is unusable, it is started with
``posix_spawn``.  Not ``subprocess`` or asyncio's subprocess transport: those
kill or reap a child behind our back (asyncio kills a still running child when
its transport is closed or collected, and ``subprocess`` reaps abandoned
children from a global list), and a DPE must outlive cped.

Every process is watched through a pidfd, which becomes readable the moment
the process exits, whether it is our child or not: a child is reaped at once
(on these machines PID 1 reaps late and a zombie looks alive), an adopted DPE
left by a previous cped is noticed at once too, and the exit status of a dped
the template forked comes from the template, which reaps it.  Signals go
through the pidfd as well, so a recycled pid is never signalled.

``attach`` adopts a running DPE only if ``/proc/PID/cmdline`` shows a dped of
that deployable (checked again once the pidfd pins the process).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from cpe.control import cped_environment
from cpe.dpe_scheduling import Scheduling, process_age, read_scheduling
from cpe.dpe_template import DpedTemplate, template_argv
from foundation.paths import LOG_MODE, Paths

log = logging.getLogger("cped.dpe")

ExitCallback = Callable[[int | None], None]  # the exit status (None: not our child)
DPED_MARKERS = frozenset({"dped", "dpe.main"})
# Signals cped ignores or handles whose disposition must not reach a DPE.
RESET_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGPIPE,
    signal.SIGXFSZ,
    signal.SIGTSTP,
    signal.SIGTTIN,
    signal.SIGTTOU,
)
REAP_RETRY = 0.01
REPORT_TRIES = 200  # REAP_RETRY apart: how long a template's exit report is waited for
LOG_TAIL_BYTES = 4096
TITLE_SLACK = 64  # room for a dped's command line beyond the longest expected


def dped_command() -> list[str]:
    """``dped`` installed beside this Python, else this Python running ``dpe.main``."""
    installed = Path(sys.executable).parent / "dped"
    if os.access(installed, os.X_OK):
        return [str(installed)]
    return [sys.executable, "-m", "dpe.main"]


def dped_log_file(paths: Paths, deployable: str) -> Path:
    return paths.log_dir / f"dped-{deployable}.log"


class ExitReports(Protocol):
    """Exit statuses another process reaped (the template, for the dpeds it forked)."""

    @property
    def alive(self) -> bool: ...

    def exit_status(self, pid: int) -> tuple[bool, int | None]: ...


def command_line(pid: int) -> list[str] | None:
    """The process's argv, or None when it is gone (or a zombie: no argv)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    words = [os.fsdecode(word) for word in raw.split(b"\0") if word]
    return words or None


def looks_like_dped(argv: Sequence[str], deployable: str, markers: frozenset[str]) -> bool:
    """``dped ... DEPLOYABLE`` or ``python -m dpe.main ... DEPLOYABLE``."""
    if not argv or argv[-1] != deployable:
        return False
    return any(Path(word).name in markers for word in argv[:4])


class PidfdProcess:
    """One DPE process watched through its pidfd; ``on_exit`` runs once, in the loop."""

    def __init__(
        self,
        pid: int,
        pidfd: int,
        *,
        child: bool,
        on_exit: ExitCallback,
        loop: asyncio.AbstractEventLoop,
        reports: ExitReports | None = None,
    ) -> None:
        self.pid = pid
        self.child = child  # its exit status is known: our child, or reported
        self._pidfd: int | None = pidfd
        self._on_exit = on_exit
        self._loop = loop
        self._reports = reports  # who reaps it, when not this cped
        self._tries = 0
        loop.add_reader(pidfd, self._readable)

    @property
    def watched(self) -> bool:
        return self._pidfd is not None

    def signal(self, signum: int) -> bool:
        """Send ``signum``; False if the process has already exited."""
        if self._pidfd is None:
            return False
        try:
            signal.pidfd_send_signal(self._pidfd, signum)
        except ProcessLookupError:
            return False
        return True

    def detach(self) -> None:
        """Stop watching (cped is stopping); the process is left alone, never signalled."""
        self._close()

    def scheduling(self) -> Scheduling | None:
        """The kernel's view of it (None once it has exited: the pidfd pins the pid)."""
        return read_scheduling(self.pid) if self._pidfd is not None else None

    def running_for(self) -> float | None:
        return process_age(self.pid) if self._pidfd is not None else None

    def _readable(self) -> None:
        if self._reports is not None:
            self._reported()
            return
        status: int | None = None
        if self.child:
            try:
                reaped, raw = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                reaped, raw = self.pid, 0  # reaped elsewhere: status unknown
                self.child = False
            if reaped == 0:  # readable a hair before the zombie is waitable
                self._loop.remove_reader(self._pidfd or -1)
                self._loop.call_later(REAP_RETRY, self._retry)
                return
            status = os.waitstatus_to_exitcode(raw) if self.child else None
        self._close()
        self._on_exit(status)

    def _reported(self) -> None:
        """Its exit as the template reports it (it reaps it, a moment after the exit)."""
        assert self._reports is not None
        known, status = self._reports.exit_status(self.pid)
        waiting = self._reports.alive and self._tries < REPORT_TRIES
        if not known and waiting:
            self._tries += 1
            self._loop.remove_reader(self._pidfd or -1)
            self._loop.call_later(REAP_RETRY, self._retry)
            return
        self._close()
        self._on_exit(status)

    def _retry(self) -> None:
        if self._pidfd is not None:
            self._loop.add_reader(self._pidfd, self._readable)

    def _close(self) -> None:
        if self._pidfd is None:
            return
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = None


class DpedLauncher:
    """Starts and adopts real DPE processes for one set of paths."""

    def __init__(
        self,
        paths: Paths,
        command: Sequence[str] | None = None,
        markers: frozenset[str] = DPED_MARKERS,
        config_file: Path | None = None,
        member: str | None = None,
    ) -> None:
        self.paths = paths
        # several members share the store: each dped is told the member it runs under
        # (its lease holder's prefix), as this cped knows it, on its own command line
        self.member_args = ["--member", member] if member else []
        self.command = list(command) if command is not None else dped_command()
        # the file cped was started with (--config), so its DPEs read the same one
        self.config_args = ["--config", str(config_file)] if config_file is not None else []
        self.markers = markers
        self.environment = cped_environment(paths)  # the DPE resolves exactly these paths
        self.template: DpedTemplate | None = None

    def use_template(self, preload: Sequence[str] = ()) -> None:
        """Fork dpeds from a template process from now on (started here, in the loop);
        ``preload``: modules this cped's dpeds import beyond the usual ones."""
        longest = self._args("x" * 63, clear_failed=True, stop_only=True)
        room = len(" ".join(["dped", *longest])) + TITLE_SLACK
        self.template = DpedTemplate(
            template_argv(sys.executable, room, preload),
            self.environment,
            self.paths.log_dir / "dped-template.log",
        )
        self.template.start()

    def close(self) -> None:
        if self.template is not None:
            self.template.close()

    def spawn(
        self,
        deployable: str,
        *,
        clear_failed: bool,
        on_exit: ExitCallback,
        stop_only: bool = False,
    ) -> PidfdProcess:
        """Start a DPE (OSError if it cannot be started); ``stop_only``: one that
        stops what a previous DPE left, then exits (``dped --stop-only``)."""
        args = self._args(deployable, clear_failed=clear_failed, stop_only=stop_only)
        log_file = dped_log_file(self.paths, deployable)
        log_file.parent.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        forked = self._fork(args, log_file, on_exit, loop)
        if forked is not None:
            return forked
        argv = [*self.command, *args]
        pid = os.posix_spawn(
            argv[0],
            argv,
            self.environment,
            file_actions=_file_actions(log_file),
            setsid=True,
            setsigmask=(),
            setsigdef=RESET_SIGNALS,
        )
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            os.kill(pid, signal.SIGKILL)  # cannot watch it: do not leave it unsupervised
            os.waitpid(pid, 0)
            raise
        return PidfdProcess(pid, pidfd, child=True, on_exit=on_exit, loop=loop)

    def _fork(
        self,
        args: list[str],
        log_file: Path,
        on_exit: ExitCallback,
        loop: asyncio.AbstractEventLoop,
    ) -> PidfdProcess | None:
        """A dped forked by the template; None when it is not ready (still
        starting, or gone): the caller starts one itself."""
        template = self.template
        if template is None:
            return None
        template.look_after()
        if not template.ready:
            return None
        try:
            pid, pidfd = template.fork(args, log_file)
        except OSError as error:
            log.warning("the dped template did not fork a dped (%s): starting it directly", error)
            return None
        return PidfdProcess(pid, pidfd, child=True, on_exit=on_exit, loop=loop, reports=template)

    def _args(self, deployable: str, *, clear_failed: bool, stop_only: bool) -> list[str]:
        """dped's arguments (after the program): the same from a template or not."""
        args = ["--foreground", *self.config_args, *self.member_args]
        args += ["--clear-failed"] if clear_failed else []
        args += ["--stop-only"] if stop_only else []
        return [*args, deployable]

    def attach(self, deployable: str, pid: int, on_exit: ExitCallback) -> PidfdProcess | None:
        """Watch a DPE another cped started; None unless ``pid`` runs dped for
        ``deployable``; OSError if it does but cannot be watched."""
        if not self.is_dped(pid, deployable):
            return None
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return None
        if not self.is_dped(pid, deployable):  # exited and reused before the pidfd pinned it
            os.close(pidfd)
            return None
        loop = asyncio.get_running_loop()
        return PidfdProcess(pid, pidfd, child=False, on_exit=on_exit, loop=loop)

    def last_words(self, deployable: str) -> str:
        """The last line of the deployable's DPE log (why a DPE failed, usually)."""
        try:
            with dped_log_file(self.paths, deployable).open("rb") as log_file:
                log_file.seek(0, os.SEEK_END)
                log_file.seek(max(0, log_file.tell() - LOG_TAIL_BYTES))
                lines = log_file.read().decode(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1].strip() if lines else ""

    def is_dped(self, pid: int, deployable: str) -> bool:
        argv = command_line(pid)
        return argv is not None and looks_like_dped(argv, deployable, self.markers)


def _file_actions(log_file: Path) -> list[tuple[int, ...] | tuple[int, int, str, int, int]]:
    append = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    return [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log_file), append, LOG_MODE),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
