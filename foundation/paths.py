"""Every path pacemaker-cloud uses, decided in one place.

Nothing else reads the environment for paths.  ``PCLOUD_HOME`` puts config,
state and runtime under one directory (tests and the demo use it).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

APP = "pacemaker-cloud"
CONFIG_NAME = "pacemaker-cloud.conf"
# sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_SOCKET_PATH = 107


@dataclass(frozen=True)
class Paths:
    config_dir: Path
    state_dir: Path
    runtime_dir: Path

    @property
    def config_file(self) -> Path:
        return self.config_dir / CONFIG_NAME

    @property
    def store_file(self) -> Path:
        return self.state_dir / "store.sqlite"

    @property
    def keys_dir(self) -> Path:
        return self.state_dir / "keys"

    @property
    def images_dir(self) -> Path:
        return self.state_dir / "images"

    @property
    def instances_dir(self) -> Path:
        """Private directories of local-driver instances."""
        return self.state_dir / "instances"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "log"

    @property
    def socket(self) -> Path:
        return self.runtime_dir / "cped.sock"

    @property
    def pidfile(self) -> Path:
        return self.runtime_dir / "cped.pid"

    @property
    def wake_socket(self) -> Path:
        """Where cped hears that a DPE stored something (``foundation.wakeup``).

        As long as ``socket``: a home whose API socket fits fits this one too."""
        return self.runtime_dir / "wake.sock"

    @property
    def handshake_dir(self) -> Path:
        """The host-wide slots of SSH handshakes (``dpe.handshake_slots``)."""
        return self.runtime_dir / "handshakes"

    def ensure(self) -> None:
        """Create the directories.  The runtime directory stays 0755: access to
        cped is decided by the socket's own mode (0660) and group."""
        for directory in (self.config_dir, self.state_dir, self.runtime_dir):
            directory.mkdir(mode=0o755, parents=True, exist_ok=True)
        self.keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)


STORE_MODE = 0o600  # resource parameters may hold passwords
LOG_MODE = 0o640
HISTORY_MODE = 0o600  # what the admin typed, parameters included


def private_file(path: Path, mode: int) -> Path:
    """``path``, created empty with ``mode`` when missing; an existing file loses the
    permissions ``mode`` does not give (it is never opened wider).

    An existing file is never opened: closing any descriptor of a file drops every
    POSIX lock this process holds on it, and SQLite keeps its store's locks that way
    (with them gone, another process closing last deletes the WAL under us)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except FileExistsError:
        current = stat.S_IMODE(os.stat(path).st_mode)
        if current & ~mode:
            os.chmod(path, current & mode)
        return path
    os.close(fd)
    return path


def resolve(environ: Mapping[str, str] | None = None, uid: int | None = None) -> Paths:
    """The paths for this process: PCLOUD_HOME, else root's, else the user's XDG ones."""
    env = os.environ if environ is None else environ
    uid = os.getuid() if uid is None else uid
    home = env.get("PCLOUD_HOME")
    if home:
        base = Path(home).absolute()
        return Paths(base / "etc", base / "state", base / "run")
    if uid == 0:
        return Paths(Path("/etc", APP), Path("/var/lib", APP), Path("/run", APP))
    user_home = Path(env.get("HOME", "~")).expanduser()
    return Paths(
        _xdg(env, "XDG_CONFIG_HOME", user_home / ".config") / APP,
        _xdg(env, "XDG_STATE_HOME", user_home / ".local" / "state") / APP,
        _xdg(env, "XDG_RUNTIME_DIR", Path("/tmp", f"{APP}-{uid}")) / APP,
    )


def _xdg(env: Mapping[str, str], name: str, default: Path) -> Path:
    value = env.get(name)
    return Path(value) if value else default
