"""Starting, stopping and asking about cped from another program (pcloudsh).

``start_daemon`` runs ``cped`` (daemonized) and returns once its API answers;
``stop_daemon`` sends SIGTERM to the pid in the pidfile and waits until the
process is gone, and never signals a pid that is not cped; ``daemon_status``
reports health, or None when no cped runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cpe
from cpe.client import Client, Remote
from cpe.pidfile import is_locked, read_pid
from foundation.config import CpedSettings, load_config
from foundation.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    OperationTimeout,
    PcloudError,
    Unavailable,
)
from foundation.paths import Paths, resolve

POLL_INTERVAL = 0.05
LOG_TAIL_LINES = 20
START_TIMEOUT = 30.0  # until a starting cped answers on its socket (a loaded host is slow)
STOP_MARGIN = 10.0  # beyond the configured waits: closing the store, the template, the log


def start_daemon(
    paths: Paths, config_file: Path | None = None, timeout: float = START_TIMEOUT
) -> int:
    """Start cped in the background; its pid once ``/v1/health`` answers."""
    running = daemon_status(paths)
    if running is not None:
        raise Conflict(f"cped is already running (pid {running.get('pid')})")
    deadline = time.monotonic() + timeout
    log_start = _log_size(paths)  # a failure shows this start's lines, not an older one's
    command = cped_command() + (["--config", str(config_file)] if config_file else [])
    with tempfile.TemporaryFile() as errors:
        launcher = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            env=cped_environment(paths),
        )
        status = _wait_exit(launcher, deadline)
        if status != 0:
            errors.seek(0)
            raise _start_error(status, errors.read().decode(errors="replace"))
    return _wait_healthy(paths, deadline, log_start, timeout)


def stop_daemon(paths: Paths, timeout: float | None = None) -> int | None:
    """Stop cped; the pid that was stopped, or None if cped was not running.

    Without a ``timeout``, as long as cped's own configuration lets its stop take
    (``stop_timeout``)."""
    if timeout is None:
        timeout = stop_timeout(paths)
    deadline = time.monotonic() + timeout
    pid = _running_pid(paths, deadline)
    if pid is None:
        return None
    if not is_cped(pid):
        raise Conflict(f"pid {pid} in {paths.pidfile} is not cped: not signalling it")
    try:
        os.kill(pid, signal.SIGTERM)
    except PermissionError:
        raise Forbidden(
            f"cped (pid {pid}) runs as another user: only that user or root may stop it"
        ) from None
    while process_alive(pid) or is_locked(paths.pidfile):
        if time.monotonic() > deadline:
            raise OperationTimeout(f"cped (pid {pid}) did not stop within {timeout:g} s")
        time.sleep(POLL_INTERVAL)
    return pid


def stop_timeout(paths: Paths) -> float:
    """How long cped may take to stop in order: requests in flight get
    ``shutdown_timeout``, handing deployables over to other members as long again,
    then the store and the template are closed.  Read from the configuration the
    running cped names (it may have been started with ``--config``)."""
    try:
        named = Client(paths.socket, timeout=2.0).health().get("config")
    except PcloudError:
        named = None  # not answering: the default file is the best guess
    settings = CpedSettings()
    with contextlib.suppress(InvalidInput):
        settings = load_config(Path(named) if named else paths.config_file).cped
    return 2 * settings.shutdown_timeout + STOP_MARGIN


def daemon_status(paths: Paths, timeout: float = 2.0) -> dict[str, Any] | None:
    """cped's health (plus ``socket``), a ``status: unreachable`` record when it runs
    but does not answer, or None when it does not run."""
    try:
        return {**Client(paths.socket, timeout=timeout).health(), "socket": str(paths.socket)}
    except Forbidden:
        raise  # this user may not ask cped: whether it runs is not this user's to tell
    except PcloudError as error:
        if not is_locked(paths.pidfile):
            return None
        return {
            "status": "unreachable",
            "pid": read_pid(paths.pidfile),
            "socket": str(paths.socket),
            "error": str(error),
        }


# The shape pcloudsh's daemon commands use.


def start(paths: Paths, timeout: float = START_TIMEOUT) -> dict[str, Any]:
    running = daemon_status(paths)
    if running is not None:
        return {"pid": running.get("pid"), "already_running": True}
    try:
        return {"pid": start_daemon(paths, timeout=timeout), "already_running": False}
    except OperationTimeout:
        raise  # ours was launched and is still starting: not one started meanwhile
    except PcloudError:
        other = _started_meanwhile(paths)
        if other is None:
            raise
        return {"pid": other, "already_running": True}


def _started_meanwhile(paths: Paths) -> int | None:
    """The pid of a cped another start launched at the same moment, which took the
    pidfile first (ours then refused to run beside it): cped runs, as asked."""
    if not is_locked(paths.pidfile):
        return None
    try:
        return _wait_healthy(
            paths, time.monotonic() + START_TIMEOUT, _log_size(paths), START_TIMEOUT
        )
    except PcloudError:
        return None


def stop(paths: Paths) -> dict[str, Any]:
    """Stop cped; ``still_running`` names the deployables whose DPEs keep running
    (they are not stopped with cped; the next cped adopts them)."""
    started = _started_deployables(paths)
    pid = stop_daemon(paths)
    return {"pid": pid, "was_running": pid is not None, "still_running": started}


def _started_deployables(paths: Paths) -> list[str]:
    try:
        rows = Client(paths.socket, timeout=2.0).list_deployables()
    except PcloudError:
        return []
    return [row["name"] for row in rows if row.get("desired") == "started"]


def status(paths: Paths) -> dict[str, Any] | None:
    return daemon_status(paths)


def remote_status(remote: Remote, timeout: float = 2.0) -> dict[str, Any]:
    """The health of the cped at ``remote`` (``PCLOUD_URL``) with its ``url``, or a
    ``status: unreachable`` record: no pidfile there to tell "not running" apart."""
    client = Client("", timeout=timeout, remote=remote)
    try:
        return {**client.health(), "url": client.endpoint}
    except (Unavailable, OperationTimeout) as error:
        return {"status": "unreachable", "url": remote.url, "error": str(error)}


# ---------------------------------------------------------------------------
# processes


def cped_command() -> list[str]:
    """``cped`` installed beside this Python, else this Python running ``cpe.main``."""
    installed = Path(sys.executable).parent / "cped"
    if os.access(installed, os.X_OK):
        return [str(installed)]
    return [sys.executable, "-m", "cpe.main"]


def cped_environment(paths: Paths) -> dict[str, str]:
    """The environment under which cped resolves exactly ``paths``."""
    env = dict(os.environ)
    source_root = str(Path(cpe.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (source_root, env.get("PYTHONPATH")) if p)
    if resolve(env) == paths:
        return env
    home = paths.config_dir.parent
    if resolve({"PCLOUD_HOME": str(home)}) == paths:
        return {**env, "PCLOUD_HOME": str(home)}
    raise InvalidInput(f"cped cannot be started on these paths (not a PCLOUD_HOME): {paths}")


def is_cped(pid: int) -> bool:
    """Whether ``pid`` runs cped (``cped`` or ``python -m cpe.main``)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    words = [os.fsdecode(a) for a in argv if a]
    return any(Path(w).name == "cped" for w in words[:2]) or "cpe.main" in words[:3]


def process_alive(pid: int) -> bool:
    """True unless the process is gone or a zombie (PID 1 may reap it late)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _running_pid(paths: Paths, deadline: float) -> int | None:
    """The pid of the running cped (waits while a starting one has not written it yet)."""
    while is_locked(paths.pidfile):
        pid = read_pid(paths.pidfile)
        if pid is not None:
            return pid
        if time.monotonic() > deadline:
            raise OperationTimeout(f"cped holds {paths.pidfile} but has not written its pid")
        time.sleep(POLL_INTERVAL)
    return None


def _wait_exit(launcher: subprocess.Popen[bytes], deadline: float) -> int:
    try:
        return launcher.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        launcher.kill()
        launcher.wait()
        raise OperationTimeout("cped did not detach in time") from None


def _start_error(status: int, stderr: str) -> PcloudError:
    message = f"cped failed to start (exit status {status}):\n{stderr.strip()}"
    return InvalidInput(message) if status == 2 else PcloudError(message)


def _wait_healthy(paths: Paths, deadline: float, log_start: int, timeout: float) -> int:
    client = Client(paths.socket, timeout=1.0)
    while time.monotonic() < deadline:
        try:
            return int(client.health()["pid"])
        except PcloudError:
            if not is_locked(paths.pidfile):
                raise PcloudError(
                    "cped exited while starting; the end of its log:\n"
                    + _log_tail(paths, log_start)
                ) from None
        time.sleep(POLL_INTERVAL)
    raise _not_answering(paths, timeout)


def _not_answering(paths: Paths, timeout: float) -> OperationTimeout:
    """Gave up waiting: cped was launched and runs, but has not answered yet."""
    pid = read_pid(paths.pidfile) if is_locked(paths.pidfile) else None
    which = f"cped (pid {pid})" if pid is not None else "cped (no pid written yet)"
    return OperationTimeout(
        f"{which} did not answer on {paths.socket} within {timeout:g} s and may still be"
        f" starting (a loaded host is slow): `pcloudsh status` tells when it answers,"
        f" `pcloudsh start --timeout` waits longer; its log: {paths.log_dir / 'cped.log'}"
    )


def _log_size(paths: Paths) -> int:
    try:
        return (paths.log_dir / "cped.log").stat().st_size
    except OSError:
        return 0


def _log_tail(paths: Paths, start: int = 0) -> str:
    """The last lines cped logged from ``start`` on (0 as well if the log was rotated)."""
    try:
        with (paths.log_dir / "cped.log").open("rb") as log:
            log.seek(start if start <= os.fstat(log.fileno()).st_size else 0)
            lines = log.read().decode(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-LOG_TAIL_LINES:]) or "(nothing logged)"
