"""cped's pidfile, locked with ``flock`` for as long as cped runs.

The lock, not the file's existence, says whether cped runs: a second cped
cannot take it, and the file a killed cped leaves behind is not locked, so the
next one simply takes it over (no stale-pidfile trouble after ``kill -9``).
The lock belongs to the open file, so it survives python-daemon's forks as long
as the descriptor is preserved.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from foundation.errors import Conflict, Forbidden


class PidFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        """Lock the pidfile, or Conflict naming the running cped."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid = read_pid(self.path)
            running = f"pid {pid}" if pid else "pid not yet written"
            raise Conflict(
                f"cped is already running ({running}): its pidfile {self.path} is locked"
            ) from None
        os.ftruncate(fd, 0)  # a pid left by a killed cped must not be read as ours
        self._fd = fd

    def fileno(self) -> int:
        if self._fd is None:
            raise RuntimeError("the pidfile is not acquired")
        return self._fd

    def write_pid(self, pid: int) -> None:
        fd = self.fileno()
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{pid}\n".encode(), 0)

    def release(self) -> None:
        """Remove the file, then drop the lock (in that order: no window for a reader)."""
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None


def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def is_locked(path: Path) -> bool:
    """True while some cped holds the pidfile."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return False  # NotADirectoryError: PCLOUD_HOME or run/ is a file, so no cped runs there
    except PermissionError:
        raise Forbidden(
            f"permission denied on cped's pidfile {path}: run as cped's user or as root"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
