"""cped's side of the dped template (``dpe.template``): start it, ask it for dpeds.

``start`` spawns ``python -m dpe.template`` in a session of its own, with one
end of a ``SOCK_SEQPACKET`` socket pair on its descriptor 3 and a padding
argument that leaves room for a dped's command line; the loop then reads its
messages: ``ready`` once it has imported dped, and the exit status of every
dped it forked (it is their parent and reaps them).  ``fork`` asks for one
dped and waits (a fork takes milliseconds) for its pid and pidfd.

Until the template is ready (its imports take a second, several on a busy
host), cped starts dpeds itself (``posix_spawn``, as without a template): a
start never waits for it.  If the template dies, or is not ready within
``READY_WITHIN`` seconds, cped goes on starting dpeds itself and tries a new
template ``RETRY_AFTER`` seconds later (``look_after``, at each start).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import select
import socket
import time
from collections.abc import Callable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

log = logging.getLogger("cped.dpe")

READY_WITHIN = 60.0  # the template's imports, on a busy host
RETRY_AFTER = 60.0  # after the template died or never became ready
FORK_WITHIN = 10.0  # one fork request answered
MAX_MESSAGE = 64 * 1024
CONTROL_FD = 3
PRELOAD_OPTION = "--preload="


class TemplateState(StrEnum):
    STOPPED = "stopped"  # none yet, or closed
    STARTING = "starting"  # importing
    READY = "ready"
    FAILED = "failed"  # died or never became ready; posix_spawn until RETRY_AFTER


class DpedTemplate:
    def __init__(
        self,
        argv: Sequence[str],
        environment: dict[str, str],
        log_file: Path,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.argv = list(argv)  # the command line, padding included
        self.environment = environment
        self.log_file = log_file
        self.clock = clock
        self.state = TemplateState.STOPPED
        self.pid: int | None = None
        self.since = 0.0  # when the current state began
        self._socket: socket.socket | None = None
        self._pidfd: int | None = None
        self._exits: dict[int, int] = {}  # pid -> exit status, reported, not yet taken
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- what the launcher asks ----------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.state is TemplateState.READY

    @property
    def alive(self) -> bool:
        return self.state in (TemplateState.STARTING, TemplateState.READY)

    def start(self) -> None:
        """Spawn the template (in the running loop); ``ready`` once it says so."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        theirs.set_inheritable(True)  # were it already descriptor 3, dup2 would keep CLOEXEC
        try:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            self.pid = os.posix_spawn(
                self.argv[0],
                self.argv,
                self.environment,
                file_actions=_file_actions(self.log_file, theirs.fileno()),
                setsid=True,
            )
            self._pidfd = os.pidfd_open(self.pid)
        except OSError as error:
            ours.close()
            self._failed(f"cannot start the dped template: {error}")
            return
        finally:
            theirs.close()
        ours.setblocking(False)
        self._socket = ours
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(ours, self._readable)
        self._loop.add_reader(self._pidfd, self._template_exited)
        self._enter(TemplateState.STARTING)
        log.info("dped template starting (pid %d)", self.pid)

    def look_after(self) -> None:
        """Before a fork: give up on a template too slow to start, replace a failed one."""
        self._check_progress()
        if self.state is TemplateState.FAILED and self.clock() - self.since >= RETRY_AFTER:
            self.start()

    def fork(self, args: Sequence[str], log_file: Path) -> tuple[int, int]:
        """A new dped ``args``: its pid and a pidfd (the caller owns it); OSError if not."""
        if self._socket is None or not self.ready:
            raise OSError(errno.EAGAIN, "the dped template is not ready")
        request = json.dumps({"args": list(args), "log": str(log_file)}).encode()
        try:
            self._socket.send(request)
        except OSError as error:
            self._failed(f"the dped template does not answer: {error}")
            raise
        deadline = self.clock() + FORK_WITHIN
        while True:
            message, fds = self._receive(deadline - self.clock())
            if "pid" in message and fds:
                _close(fds[1:])
                return int(message["pid"]), fds[0]
            _close(fds)
            if "error" in message:
                raise OSError(errno.EAGAIN, str(message["error"]))

    def exit_status(self, pid: int) -> tuple[bool, int | None]:
        """(reported, status) of a dped the template forked; status taken once."""
        if pid in self._exits:
            return True, self._exits.pop(pid)
        return False, None

    def close(self) -> None:
        """cped stops: the template sees the socket close and exits; its dpeds run on."""
        self._stop_watching()
        if self.pid is not None:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, os.WNOHANG)
        self._enter(TemplateState.STOPPED)

    # -- the socket and the process --------------------------------------------------

    def _readable(self) -> None:
        """Messages that came while cped was not waiting for a fork: exits, ready."""
        while self._socket is not None:
            try:
                data, fds, _, _ = socket.recv_fds(self._socket, MAX_MESSAGE, 1)
            except BlockingIOError:
                return
            except OSError as error:
                self._failed(f"the dped template's socket failed: {error}")
                return
            if not data:
                self._failed("the dped template closed its socket")
                return
            _close(fds)  # a pidfd only comes with a fork's answer
            self._handle(_decode(data))

    def _receive(self, within: float) -> tuple[dict[str, Any], list[int]]:
        """The next message that answers a fork, handling the others on the way."""
        while self._socket is not None:
            readable, _, _ = select.select([self._socket], [], [], max(0.0, within))
            if not readable:
                self._failed(f"the dped template did not answer within {FORK_WITHIN:g} s")
                break
            data, fds, _, _ = socket.recv_fds(self._socket, MAX_MESSAGE, 1)
            if not data:
                self._failed("the dped template closed its socket")
                break
            message = _decode(data)
            if "pid" in message or "error" in message:
                return message, list(fds)
            _close(fds)
            self._handle(message)
        raise OSError(errno.EPIPE, "the dped template is gone")

    def _handle(self, message: dict[str, Any]) -> None:
        if message.get("ready") and self.state is TemplateState.STARTING:
            self._enter(TemplateState.READY)
            log.info("dped template ready (pid %s)", self.pid)
        elif "exit" in message:
            self._exits[int(message["exit"])] = int(message.get("status", 1))

    def _template_exited(self) -> None:
        status = None
        if self.pid is not None:
            with contextlib.suppress(ChildProcessError):
                _, raw = os.waitpid(self.pid, os.WNOHANG)
                status = os.waitstatus_to_exitcode(raw)
        self._failed(f"the dped template exited (status {status})")

    def _check_progress(self) -> None:
        if self.state is TemplateState.STARTING and self.clock() - self.since > READY_WITHIN:
            if self.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, 9)  # our own child, not ready: it is replaced later
            self._failed(f"the dped template was not ready within {READY_WITHIN:g} s")

    def _failed(self, reason: str) -> None:
        if self.state is not TemplateState.FAILED:
            log.error("%s: starting dpeds directly until a new one is ready", reason)
        self._stop_watching()
        self._enter(TemplateState.FAILED)

    def _stop_watching(self) -> None:
        if self._socket is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._socket)
            self._socket.close()
            self._socket = None
        if self._pidfd is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None

    def _enter(self, state: TemplateState) -> None:
        self.state, self.since = state, self.clock()


def template_argv(python: str, room: int, preload: Sequence[str] = ()) -> list[str]:
    """``python -m dpe.template`` with ``room`` bytes of padding for a dped's title,
    importing ``preload`` too (``--preload=A,B``)."""
    extra = [f"{PRELOAD_OPTION}{','.join(preload)}"] if preload else []
    return [python, "-m", "dpe.template", *extra, " " * room]


def _file_actions(log_file: Path, control: int) -> list[Any]:
    append = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    return [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log_file), append, 0o640),
        (os.POSIX_SPAWN_DUP2, 1, 2),
        (os.POSIX_SPAWN_DUP2, control, CONTROL_FD),
    ]


def _decode(data: bytes) -> dict[str, Any]:
    try:
        message = json.loads(data)
    except ValueError:
        return {}
    return message if isinstance(message, dict) else {}


def _close(fds: Sequence[int]) -> None:
    for fd in fds:
        os.close(fd)
