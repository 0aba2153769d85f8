"""The dped template: a process that has imported dped once, and forks a dped per request.

Each dped is an independent process (a session of its own, its own log file,
adopted by the next cped like any other), but the interpreter, asyncssh,
cryptography, pydantic with the document's models and the engine's code were
imported once, here, before the fork, so their pages are shared between every
dped instead of copied into each (copy-on-write).  What a dped would otherwise
build lazily on its first SSH connection (OpenSSL's algorithm tables, asyncssh's
state) is built here too, by one SSH handshake with itself on the loopback.
``gc.freeze()`` before the first fork moves every object this made out of the
collector's reach: a collection in a dped never touches them, so their pages
stay shared.  What a dped still copies is the pages whose objects it uses
(CPython writes an object's reference count when code uses it): see the
benchmark's memory figures.

cped starts the template (``python -m dpe.template``, a session of its own)
with a ``SOCK_SEQPACKET`` socket on descriptor 3 (one message per datagram,
descriptors passed along), and they speak JSON messages on it::

    template -> cped   {"ready": true}                    imports done
    cped -> template   {"args": [...], "log": FILE}        start ``dped ARGS``
    template -> cped   {"pid": N} + the child's pidfd     started
                       {"error": TEXT}                    could not fork
                       {"exit": N, "status": S}           a child exited (reaped here)

The template holds no store connection, no socket but that one, and no
thread when it forks.  Nor does it hold anything of a member's: it never reads
the configuration, so no store URL, no cluster key, no member name is baked
into the pages every dped shares.  Each forked dped gets them per fork, as a
spawned one does: its member identity on its command line (``--member``, from
cped), and the store's URL, its timeout and the cluster key file from the
configuration it reads itself after the fork (``--config``); the cluster key
is read by the dped that needs it, into its own memory.  What cped may ask the
template to import beforehand (``--preload=A,B``) is code only: the PostgreSQL
store's modules when the members share one.  A child closes the socket, becomes a session leader
with its output appended to ``FILE``, takes the command line ``dped ARGS`` (so
``ps`` and cped's adoption, which reads ``/proc/PID/cmdline``, see a dped of
its deployable) and runs ``dpe.main.main(ARGS)``.  The template was started
with room for that command line in its own (a padding argument), since a
process cannot grow the memory its arguments live in.

The template exits when cped closes the socket (cped stopped); its children
keep running, as DPEs do when cped stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import json
import os
import selectors
import signal
import socket
import sys
import traceback
from pathlib import Path
from typing import Any, TypeGuard

from foundation.warning_policy import quiet_third_party_warnings

CONTROL_FD = 3
PRELOAD_OPTION = "--preload="
MAX_MESSAGE = 64 * 1024
TITLE = "dped-template"
# What a dped imports as it runs (the engine, SSH, the local driver, the guest
# agent's client); a module that is not installed is left to the child.
PRELOAD = (
    "dpe.main",
    "dpe.dped_process",
    "dpe.drivers.local",
    "dpe.transport",
    "dpe.agent_channel",
    "dpe.agent_ops",
    "asyncio.subprocess",
    "asyncio.unix_events",
    "sqlite3",
    "foundation.schema",  # the stored document is validated at start and on reload
)


def main() -> int:
    quiet_third_party_warnings()
    control = socket.socket(fileno=CONTROL_FD)
    extra = preload_asked(sys.argv[1:])
    set_title([TITLE])
    left = preload((*PRELOAD, *extra))
    if left:  # each dped does it itself: more memory, nothing worse
        sys.stderr.write(f"{TITLE}: not done before forking: {', '.join(left)}\n")
    return Template(control).serve()


def preload_asked(argv: list[str]) -> tuple[str, ...]:
    """The modules ``--preload=A,B`` names (code only: psycopg's store on PostgreSQL)."""
    for word in argv:
        if word.startswith(PRELOAD_OPTION):
            return tuple(name for name in word[len(PRELOAD_OPTION) :].split(",") if name)
    return ()


def preload(modules: tuple[str, ...]) -> list[str]:
    """Import ``modules``, rehearse an SSH handshake and freeze what they made;
    what could not be done (modules not imported, the rehearsal's failure)."""
    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    failed = rehearse()
    gc.collect()
    gc.freeze()
    return missing + ([failed] if failed else [])


def rehearse() -> str:
    """One SSH handshake on the loopback; "" or why it failed (each dped then
    builds that state itself: more memory, nothing worse)."""
    try:
        from dpe.transport import rehearse_handshake

        asyncio.run(rehearse_handshake())
    except Exception as error:  # noqa: BLE001 - an optimisation: any failure only costs memory
        return f"SSH rehearsal: {error!r}"
    return ""


class Template:
    def __init__(self, control: socket.socket) -> None:
        self.control = control
        self.wakeup_read, self.wakeup_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.selector = selectors.DefaultSelector()

    def serve(self) -> int:
        """Answer cped until it closes the socket."""
        signal.set_wakeup_fd(self.wakeup_write)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake the selector
        self.selector.register(self.control, selectors.EVENT_READ)
        self.selector.register(self.wakeup_read, selectors.EVENT_READ)
        self._send({"ready": True})
        while True:
            for key, _ in self.selector.select():
                if key.fileobj is self.control and not self._request():
                    return 0
            self._reap()

    def _request(self) -> bool:
        """Handle one request; False once cped has gone."""
        try:
            data = self.control.recv(MAX_MESSAGE)
        except OSError:
            return False
        if not data:
            return False
        request = _decode(data)
        args, log = request.get("args"), request.get("log")
        if not _strings(args) or not isinstance(log, str):
            self._send({"error": f"not a request: {data[:200]!r}"})
            return True
        self._fork(args, log)
        return True

    def _fork(self, args: list[str], log: str) -> None:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # nothing of ours written twice
        try:
            pid = os.fork()
        except OSError as error:
            self._send({"error": f"cannot fork: {error}"})
            return
        if pid == 0:
            self._become_dped(args, log)
        try:
            pidfd = os.pidfd_open(pid)  # pins the child: cped never signals a reused pid
        except OSError as error:
            os.kill(pid, signal.SIGKILL)
            self._send({"error": f"cannot watch the new dped: {error}"})
            return
        try:
            self._send({"pid": pid}, [pidfd])
        finally:
            os.close(pidfd)

    def _become_dped(self, args: list[str], log: str) -> None:
        """In the child: never returns."""
        status = 1
        try:
            self._leave_template()
            become_session(log)
            set_title(["dped", *args])
            sys.argv = ["dped", *args]
            from dpe.main import main as dped_main

            status = dped_main(args)
        except SystemExit as leaving:
            status = leaving.code if isinstance(leaving.code, int) else 1
        except BaseException:  # noqa: BLE001 - the child's last word, then it exits
            traceback.print_exc()
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(status)

    def _leave_template(self) -> None:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        self.selector.close()
        self.control.close()
        os.close(self.wakeup_read)
        os.close(self.wakeup_write)

    def _reap(self) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while os.read(self.wakeup_read, 512):
                pass
        while True:
            try:
                pid, raw = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._send({"exit": pid, "status": os.waitstatus_to_exitcode(raw)})

    def _send(self, message: dict[str, Any], fds: list[int] | None = None) -> None:
        data = _encode(message)
        with contextlib.suppress(OSError):  # cped gone: the next read says so
            if fds:
                socket.send_fds(self.control, [data], fds)
            else:
                self.control.send(data)


def become_session(log: str) -> None:
    """A session of its own; no input; output appended to ``log``."""
    os.setsid()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)


def set_title(argv: list[str]) -> bool:
    """Make ``/proc/self/cmdline`` (what ``ps`` shows) read ``argv``, if it fits.

    The arguments live in a fixed area of the process's memory, rewritten in
    place (and padded with NULs); the name in ``/proc/self/comm`` follows."""
    title = b"\0".join(os.fsencode(word) for word in argv) + b"\0"
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end
        if len(title) > end - start:
            return False
        with open("/proc/self/mem", "r+b", buffering=0) as memory:
            memory.seek(start)
            memory.write(title.ljust(end - start, b"\0"))
        Path("/proc/self/comm").write_text(Path(argv[0]).name[:15])
    except (OSError, ValueError, IndexError):
        return False
    return True


def _encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode()


def _decode(data: bytes) -> dict[str, Any]:
    try:
        message = json.loads(data)
    except ValueError:
        return {}
    return message if isinstance(message, dict) else {}


def _strings(value: Any) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(word, str) for word in value)


if __name__ == "__main__":
    sys.exit(main())
