"""The init of a local guest: starts sshd and reaps every orphan at once.

Run as a script (``python -I -S _guest_init.py [options] -- sshd ...``), by the
local driver, in a new session.  The launcher process:

1. enters a network namespace (``--netns NAME``, a ``/run/netns`` name);
2. with ``--pidns``, unshares a PID, mount and UTS namespace (falls back to no
   namespace when that is not permitted);
3. forks the init, writes ``--record`` (JSON: ``init_pid``, ``pidns``,
   ``start_time``, ``namespace``; atomically) and only then lets the init go
   on, so that no process of the guest ever runs unrecorded; then exits, so
   that the guest never is the child of whoever created it.

The init (PID 1 of its namespace, or a child subreaper in its own session)
mounts a private ``/proc``, starts the command, reaps every child (orphans
included: the platform's own PID 1 reaps late, and agents that look for a pid in
``/proc`` count a zombie as alive), and exits when the command exits: killing
the whole namespace (or its process group and descendants).

Every guest keeps its init for as long as it runs, so the init does not stay a
Python with its set-up's modules (``ctypes``, ``argparse``, ``json``: 5.9 MB of
PSS each).  As PID 1 of its namespace, once set up, it replaces itself
(``exec``) with ``/bin/sh`` running the command in the foreground: the shell
waits for any child, so it reaps orphans as they end, and exits with the
command's status (0.1 MB).  Such a PID 1 has no handler for SIGTERM, which the
kernel then drops: SIGKILL ends a guest, as the driver does.  Without a
namespace it replaces itself with this file's reaping mode (``--reaping``),
which imports only ``os`` and ``_signal`` (3.5 MB), forwards SIGTERM, SIGINT
and SIGHUP to the command and kills what is left when it ends.  Either keeps
the init's pid and arguments (what identifies a guest's init in ``ps``).

Standard library only, and nothing from the package: it runs with ``-I -S``.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing's: importing typing would cost the reaper memory
if TYPE_CHECKING:  # the set-up's modules are imported where used: the reaper never has them
    import argparse
    import signal
    from typing import Any
else:
    import _signal as signal  # signal.py itself imports enum: memory the reaper would keep

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_CHILD_SUBREAPER = 36
REAPING = "--reaping"  # the mode the init becomes once its command runs (no namespace)
SHELL = "/bin/sh"
# drop the init's own words, run the command in the foreground (not as the last
# command, which a shell may exec in its own place), end with its status
SHELL_SCRIPT = 'shift "$1"; "$@"; exit "$?"'


_LIBC: list[Any] = []  # loaded on first use: the reaper never needs it


def _libc() -> Any:
    if not _LIBC:
        import ctypes

        _LIBC.append(ctypes.CDLL(None, use_errno=True))
    return _LIBC[0]


def _check(result: int, what: str) -> None:
    if result != 0:
        import ctypes

        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def enter_netns(name: str) -> None:
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        _check(_libc().setns(fd, CLONE_NEWNET), f"setns {name}")
    finally:
        os.close(fd)


def unshare_pid_namespace() -> bool:
    """True when the next child will be PID 1 of a new PID and mount namespace."""
    try:
        _check(_libc().unshare(CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS), "unshare")
    except OSError as exc:
        print(f"guest-init: no PID namespace ({exc}); using a process group", file=sys.stderr)
        return False
    return True


def mount_private_proc() -> None:
    _check(_libc().mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
    flags = MS_NOSUID | MS_NODEV | MS_NOEXEC
    _check(_libc().mount(b"proc", b"/proc", b"proc", flags, None), "mount /proc")


def launch(args: argparse.Namespace, argv: list[str]) -> int:
    """``argv``: the arguments as given, which the reaper keeps."""
    if args.netns:
        enter_netns(args.netns)
    pidns = args.pidns and unshare_pid_namespace()
    go_read, go_write = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.close(go_write)
        os._exit(run_init(args, argv, pidns, go_read))
    os.close(go_read)
    write_record(args.record, pid, pidns)
    os.write(go_write, b"1")
    return 0


def write_record(path: str, pid: int, pidns: bool) -> None:
    """Read while /proc is still the host's (the init mounts its own later)."""
    import json

    with open(f"/proc/{pid}/stat", "rb") as stat:
        start_time = int(stat.read().rsplit(b")", 1)[1].split()[19])
    namespace = os.readlink(f"/proc/{pid}/ns/pid") if pidns else ""
    record = {"init_pid": pid, "pidns": pidns, "start_time": start_time, "namespace": namespace}
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as out:
        json.dump(record, out)
    os.replace(tmp, path)


def run_init(args: argparse.Namespace, argv: list[str], pidns: bool, go: int) -> int:
    try:
        go_ahead = os.read(go, 1) == b"1"
        os.close(go)
        if not go_ahead:
            return 1  # the launcher died before recording us
        _redirect_output(args.log)
        os.setsid()
        if pidns:
            mount_private_proc()
            _set_hostname(args.hostname)
        else:
            _check(_libc().prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "subreaper")
        if pidns:
            _become_shell(argv, args.command)  # returns only if the exec failed
        child = _start(args.command)
    except OSError as exc:
        print(f"guest-init: {exc}", file=sys.stderr, flush=True)
        return 1
    _become_reaper(child, pidns, argv)
    return reap(child, pidns)  # the exec failed: reap here, with the set-up's modules


def _become_shell(argv: list[str], command: list[str]) -> None:
    """As PID 1 of its namespace: replace this process with ``sh`` running the command
    in the foreground.  Waiting for it, the shell reaps every child that ends (orphans
    too: it waits for any child), and it exits with the command's status, in a tenth
    of a Python's memory.  This file and the init's options stay in its command line
    (what identifies a guest's init); ``$1`` says how many words precede the command."""
    options = argv[: len(argv) - len(command)]
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)  # ignored here, they would stay so in the command
    words = [str(len(options) + 1), *options, *command]
    try:
        os.execv(SHELL, ["sh", "-c", SHELL_SCRIPT, os.path.abspath(__file__), *words])
    except OSError as exc:
        print(f"guest-init: reaping with Python ({SHELL}: {exc})", file=sys.stderr, flush=True)


def _become_reaper(child: int, pidns: bool, argv: list[str]) -> None:
    """Replace this process with the reaping mode; returns only if that fails.  A
    child that ends meanwhile stays a zombie for the reaper (still its child)."""
    mode = "pidns" if pidns else "group"
    script = os.path.abspath(__file__)
    try:
        os.execv(
            sys.executable, [sys.executable, "-I", "-S", script, REAPING, str(child), mode, *argv]
        )
    except OSError as exc:
        print(f"guest-init: reaping in place ({exc})", file=sys.stderr, flush=True)


def reap(child: int, pidns: bool) -> int:
    """Reap until the command exits; without a namespace, then kill what is left."""
    _forward_termination(child)
    status = _reap_until(child)
    if not pidns:
        _kill_descendants()
    return status


def _set_hostname(name: str | None) -> None:
    if name:
        encoded = name.encode()
        _check(_libc().sethostname(encoded, len(encoded)), "sethostname")


def _redirect_output(log: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.close(null)


def _start(command: list[str]) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_DFL)
            os.execv(command[0], command)
        finally:
            os._exit(127)
    return pid


def _forward_termination(child: int) -> None:
    def forward(signum: int, frame: object) -> None:
        os.kill(child, signal.SIGTERM)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)


def _reap_until(child: int) -> int:
    """Reap every child; return the command's exit status once it has exited."""
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return 1
        except InterruptedError:
            continue
        if pid == child:
            return os.waitstatus_to_exitcode(status) & 0xFF


def _kill_descendants() -> None:
    """Without a namespace: kill what is left (the group, and adopted orphans)."""
    mine = os.getpid()
    for pid in _descendants(mine):
        _kill(pid)
    _kill(-mine)  # the group


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            parent = _ppid(int(entry))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return int(stat.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _kill(pid: int) -> None:
    """SIGKILL a process (a process group for ``-pgid``); one already gone is no error."""
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        return


def main(argv: list[str]) -> int:
    if argv[:1] == [REAPING]:  # REAPING CHILD MODE, then the init's own arguments
        return reap(int(argv[1]), pidns=argv[2] == "pidns")
    import argparse

    parser = argparse.ArgumentParser(prog="guest-init")
    parser.add_argument("--pidns", action="store_true", help="own PID and mount namespace")
    parser.add_argument("--netns", help="network namespace to enter (name in /run/netns)")
    parser.add_argument("--log", required=True, help="file for the command's output")
    parser.add_argument("--record", required=True, help="JSON file to write the init's pid into")
    parser.add_argument("--hostname", help="host name inside the UTS namespace (with --pidns)")
    parser.add_argument("command", nargs="+", help="absolute path of the command, and arguments")
    return launch(parser.parse_args(argv), argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
