"""A real PostgreSQL server for tests: Debian's binaries, no systemd.

``PgServer.start(...)`` runs ``initdb`` into a new temporary directory (outside
the repository) and starts ``postgres`` on a UNIX socket in that directory
(and, if asked, on TCP addresses), as the ``postgres`` user when the tests
run as root (the server refuses to run as root).  The server is the test's own
child: ``stop()`` signals it by pid (SIGINT: fast shutdown) and waits; the
directory is removed.  ``database()`` creates an empty database and returns
its URL; ``restart()`` stops and starts the same cluster (the data survive).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

PG_ROOTS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
SERVER_USER = "postgres"
ROLE = "pcloud"
START_TIMEOUT = 30.0


def binaries() -> Path | None:
    """The newest installed server's bin directory (Debian's ``postgresql``), or None."""
    for directory in PG_ROOTS:
        if (directory / "postgres").is_file() and (directory / "initdb").is_file():
            return directory
    return None


@dataclass
class PgServer:
    bin_dir: Path
    directory: Path
    listen: tuple[str, ...] = ()  # TCP addresses besides the UNIX socket
    port: int = 5432
    settings: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    _count: int = 0

    @classmethod
    def start(
        cls,
        *,
        listen: tuple[str, ...] = (),
        port: int = 5432,
        durable: bool = False,
        settings: dict[str, str] | None = None,
    ) -> PgServer:
        found = binaries()
        if found is None:
            raise RuntimeError("PostgreSQL's server is not installed (Debian package postgresql)")
        directory = Path(tempfile.mkdtemp(prefix="pc-pg-", dir="/tmp"))
        extra = dict(settings or {})
        if not durable:  # a scratch cluster: a crash of the machine may lose it
            extra |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        server = cls(found, directory, listen, port, extra)
        try:
            server._init()
            server.launch()
        except BaseException:
            server.stop()
            raise
        return server

    # -- the cluster --------------------------------------------------------------

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def _as_server_user(self) -> dict[str, str]:
        return {"user": SERVER_USER} if os.geteuid() == 0 else {}

    def _init(self) -> None:
        if os.geteuid() == 0:
            entry = pwd.getpwnam(SERVER_USER)
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)
        argv = [str(self.bin_dir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", ROLE]
        subprocess.run(
            [*argv, "--no-sync", "-E", "UTF8", "--no-instructions"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=120,
            **self._as_server_user(),  # type: ignore[arg-type]
        )
        if self.listen:
            hba = self.data / "pg_hba.conf"
            with hba.open("a") as out:
                out.write("host all all 0.0.0.0/0 trust\n")

    def launch(self) -> None:
        """Start ``postgres`` and wait until it accepts connections."""
        argv = [str(self.bin_dir / "postgres"), "-D", str(self.data), "-k", str(self.directory)]
        argv += ["-p", str(self.port), "-c", f"listen_addresses={','.join(self.listen)}"]
        for key, value in self.settings.items():
            argv += ["-c", f"{key}={value}"]
        log = (self.directory / "server.log").open("ab")
        with log:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                **self._as_server_user(),  # type: ignore[arg-type]
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited: {self.log()[-2000:]}")
            try:
                with psycopg.connect(self.url("postgres"), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def halt(self, how: int = signal.SIGINT) -> None:
        """Stop the server by pid (SIGINT: fast shutdown) and wait."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, how)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def restart(self, down_for: float = 0.0) -> None:
        self.halt()
        time.sleep(down_for)
        self.launch()

    def stop(self) -> None:
        self.halt()
        shutil.rmtree(self.directory, ignore_errors=True)

    def log(self) -> str:
        try:
            return (self.directory / "server.log").read_text(errors="replace")
        except OSError:
            return ""

    # -- databases ---------------------------------------------------------------

    def url(self, database: str, host: str | None = None) -> str:
        where = host or str(self.directory)
        return f"postgresql://{ROLE}@/{database}?host={where}&port={self.port}"

    def database(self, prefix: str = "t", host: str | None = None) -> str:
        """A new empty database; its URL (over TCP to ``host``, else the UNIX socket)."""
        self._count += 1
        name = f"{prefix}{os.getpid()}_{self._count}"
        with psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=5) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.url(name, host)

    def drop(self, url: str) -> None:
        name = url.split("/", 3)[3].split("?", 1)[0]
        with psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=5) as db:
            db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def write_cluster_key(path: Path) -> Path:
    """A new cluster key file (``[cped] key_file``): 64 hex digits, mode 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(32) + "\n")
    return path
