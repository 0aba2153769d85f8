"""cped's process: checks, daemonizing, the asyncio loop, signals and an orderly stop.

Order of events:

1. read and validate the configuration (every problem listed; exit 2 before
   anything else happens), including the access rules, the bearer token and
   the TLS certificate of the optional TCP listener (``cpe.access``), and
   check the socket path fits in ``sun_path``;
2. lock the pidfile, make sure no live cped answers on the socket, and check
   that the store opens (exit 1 with a clear message otherwise);
3. unless ``--foreground``, become a daemon with python-daemon (umask 0o022,
   the pidfile lock and the log file kept open, SIGTERM recorded instead of
   python-daemon's default of raising SystemExit wherever the code happens to be);
4. open the store, serve the API on the UNIX socket (mode 0660, group from the
   configuration) and, if configured, on the TLS listener; supervise the DPEs
   (``cpe.supervisor``: adopt the running ones, start those that should run),
   and wait for signals.

Signal handlers only record the signal; the loop acts on it.  SIGTERM and
SIGINT stop in a fixed order: close the listener, let requests in flight
finish (``shutdown_timeout``), stop watching the DPEs, close the store, remove
the socket and the pidfile.  DPEs are not stopped: they run in sessions of
their own and keep their deployables available; the next cped adopts them
(stopping a deployable is ``POST /v1/deployables/NAME/stop``).  SIGHUP
re-reads the configuration file (access rules and token included); a bad
one is logged and the previous configuration stays in force.  The settings of
``START_ONLY`` (the TCP listener, the store, the member) are read at start only:
a reload that changes them says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import logging.handlers
import os
import signal
import socket
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from cpe.access import Access, load_access, tls_context
from cpe.api import make_app
from cpe.context import DaemonInfo
from cpe.dpe_process import DpedLauncher
from cpe.membership import MemberOptions
from cpe.pidfile import PidFile
from foundation import __version__
from foundation.config import Config, load_config
from foundation.errors import Conflict, InvalidInput, PcloudError
from foundation.keyshare import KeyShare, load_cluster_key
from foundation.paths import LOG_MODE, MAX_SOCKET_PATH, Paths, private_file
from foundation.store import Store, open_store

log = logging.getLogger("cped")
STORE_MODULES = ("foundation.store_pg",)  # what dpeds import on PostgreSQL (psycopg)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INVALID = 2
SOCKET_MODE = 0o660
# A connection with no request in progress is closed after this long (aiohttp's default
# is an hour): a peer, authenticated or not, cannot hold descriptors by saying nothing.
IDLE_TIMEOUT = 15.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
RECORDED_SIGNALS = (*STOP_SIGNALS, signal.SIGHUP)
JOB_CONTROL_SIGNALS = (signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)
# [cped] settings read once, at start: a SIGHUP that changes them says so
START_ONLY = (
    "listen",
    "tls_certificate",
    "tls_key",
    "store",
    "key_file",
    "member",
    "member_url",
    "member_ttl",
    "shutdown_timeout",
)
LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
LOG_FORMAT = "%(asctime)s cped[%(process)d] %(levelname)s %(name)s: %(message)s"


@dataclass(frozen=True)
class Options:
    config_file: Path | None = None  # --config; None = Paths.config_file (may be absent)
    foreground: bool = False
    verbose: bool = False


def run(options: Options, paths: Paths) -> int:
    """The whole life of cped; returns the exit status."""
    config_path = options.config_file or paths.config_file
    try:
        config = load_config(config_path, required=options.config_file is not None)
        access = load_access(config.cped, config_path)
        tls = tls_context(config.cped, config_path)
        if config.cped.key_file is not None:
            load_cluster_key(config.cped.key_file)  # refused now, not once detached
        check_socket_path(paths.socket)
    except InvalidInput as error:
        print(f"cped: {error}", file=sys.stderr)
        return EXIT_INVALID
    pidfile = PidFile(paths.pidfile)
    try:
        paths.ensure()
        paths.log_dir.mkdir(parents=True, exist_ok=True)
        pidfile.acquire()
    except (Conflict, OSError) as error:
        print(f"cped: {error}", file=sys.stderr)
        return EXIT_FAILURE
    try:
        return _run_locked(options, paths, Loaded(config, config_path, access, tls), pidfile)
    finally:
        pidfile.release()


@dataclass(frozen=True)
class Loaded:
    """The configuration as checked before cped detaches."""

    config: Config
    path: Path
    access: Access
    tls: ssl.SSLContext | None


def _run_locked(options: Options, paths: Paths, loaded: Loaded, pidfile: PidFile) -> int:
    try:
        claim_socket_path(paths.socket)
        # Open (and migrate) the store once before detaching, so that a broken
        # store is reported here; the daemon reopens it (detaching closes files).
        open_cped_store(loaded.config, paths).close()
    except PcloudError as error:
        print(f"cped: {error}", file=sys.stderr)
        return EXIT_FAILURE
    handler = _log_handler(options, paths)
    _configure_logging(handler, _log_level(loaded.config, options))
    recorder = SignalRecorder()
    if options.foreground:
        recorder.install()
    else:
        _daemonize(pidfile, handler, recorder)
    pidfile.write_pid(os.getpid())
    daemon = Cped(paths, options, loaded, recorder)
    return asyncio.run(daemon.serve())


def open_cped_store(config: Config, paths: Paths) -> Store:
    """The store of ``[cped] store`` (PostgreSQL, shared by members) or the SQLite file."""
    return open_store(config.cped.store, paths.store_file, application="cped")


def check_socket_path(path: Path) -> None:
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise InvalidInput(
            f"the socket path {path} is longer than {MAX_SOCKET_PATH} bytes:"
            " use a shorter PCLOUD_HOME"
        )


def claim_socket_path(path: Path) -> None:
    """Refuse when a live cped answers on ``path``; remove a stale socket."""
    if not os.path.lexists(path):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2.0)
    try:
        probe.connect(str(path))
    except OSError:
        path.unlink(missing_ok=True)  # nobody listens: left by a killed cped
        return
    finally:
        probe.close()
    raise Conflict(f"another cped is already listening on {path}")


class SignalRecorder:
    """Signal handlers only record; ``Cped`` acts on what was recorded."""

    def __init__(self) -> None:
        self.pending: list[int] = []
        self._wakeup: asyncio.Event | None = None

    def record(self, signum: int, _frame: FrameType | None = None) -> None:
        self.pending.append(signum)
        if self._wakeup is not None:
            self._wakeup.set()

    def signal_map(self) -> dict[int, object]:
        """For python-daemon: record ours, ignore the terminal job-control ones."""
        handlers: dict[int, object] = dict.fromkeys(JOB_CONTROL_SIGNALS, None)
        handlers.update(dict.fromkeys(RECORDED_SIGNALS, self.record))
        return handlers

    def install(self) -> None:
        for signum in RECORDED_SIGNALS:
            signal.signal(signum, self.record)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """From now on the loop runs the handler (safe to wake the loop)."""
        self._wakeup = asyncio.Event()
        for signum in RECORDED_SIGNALS:
            loop.add_signal_handler(signum, self.record, signum)
        if self.pending:
            self._wakeup.set()

    async def next(self) -> list[int]:
        assert self._wakeup is not None
        await self._wakeup.wait()
        self._wakeup.clear()
        taken, self.pending = self.pending, []
        return taken


class Cped:
    def __init__(
        self,
        paths: Paths,
        options: Options,
        loaded: Loaded,
        recorder: SignalRecorder,
    ) -> None:
        self.paths = paths
        self.options = options
        self.info = DaemonInfo(loaded.config, access=loaded.access)
        self.config_path = loaded.path
        self.tls = loaded.tls
        self.recorder = recorder

    async def serve(self) -> int:
        try:
            store = open_cped_store(self.info.config, self.paths)
        except PcloudError as error:
            log.error("cannot start: %s", error)
            return EXIT_FAILURE
        try:
            member_store = open_cped_store(self.info.config, self.paths)
        except PcloudError as error:
            store.close()
            log.error("cannot start: %s", error)
            return EXIT_FAILURE
        try:
            return await self._serve(store, member_store)
        finally:
            store.close()
            member_store.close()
            log.info("cped stopped")

    async def _serve(self, store: Store, member_store: Store) -> int:
        config = self.info.config.cped
        launcher = DpedLauncher(
            self.paths, config_file=self.options.config_file, member=config.member_name
        )
        launcher.use_template(STORE_MODULES if config.store else ())  # pages shared by dpeds
        app = make_app(
            store,
            self.info,
            launcher=launcher,
            keys_dir=self.paths.keys_dir,
            member=MemberOptions.from_config(self.info.config),
            key_share=self._key_share(store),
            member_store=member_store,
            wake_socket=self.paths.wake_socket,
        )
        if config.listen is not None:
            _mount_console(app)
        runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=config.shutdown_timeout,
            keepalive_timeout=IDLE_TIMEOUT,
        )
        await runner.setup()
        try:
            await web.UnixSite(runner, str(self.paths.socket)).start()
            secure_socket(self.paths.socket, config.socket_group)
            await self._listen_tcp(runner, config.listen)
            self.recorder.attach(asyncio.get_running_loop())
            log.info(
                "cped %s serving on %s (pid %d, store %s)",
                __version__,
                self.paths.socket,
                os.getpid(),
                store.location,
            )
            await self._until_stopped()
        except PcloudError as error:
            log.error("cannot serve: %s", error)
            return EXIT_FAILURE
        except OSError as error:
            log.error("cannot serve on %s: %s", self.paths.socket, error)
            return EXIT_FAILURE
        finally:
            await runner.cleanup()  # closes the listener, finishes requests in flight
            launcher.close()  # the template exits; the DPEs run on
            with contextlib.suppress(FileNotFoundError):
                self.paths.socket.unlink()
        return EXIT_OK

    def _key_share(self, store: Store) -> KeyShare | None:
        """The assemblies' keys through the store, sealed with the cluster key (if set)."""
        key_file = self.info.config.cped.key_file
        if key_file is None:
            return None
        return KeyShare(store, self.paths.keys_dir, load_cluster_key(key_file))

    async def _listen_tcp(self, runner: web.AppRunner, listen: tuple[str, int] | None) -> None:
        """The TLS listener, when configured (the access check requires the token)."""
        if listen is None or self.tls is None:
            return
        host, port = listen
        try:
            await web.TCPSite(runner, host, port, ssl_context=self.tls).start()
        except OSError as error:  # the socket path would be named otherwise: say which failed
            where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            raise PcloudError(f"cannot listen on {where} ([cped] listen): {error}") from None
        log.info("serving on https://%s:%d too (TLS; a bearer token is required)", host, port)

    async def _until_stopped(self) -> None:
        while True:
            received = await self.recorder.next()
            if any(s in STOP_SIGNALS for s in received):
                name = signal.Signals(next(s for s in received if s in STOP_SIGNALS)).name
                log.info("%s received: stopping", name)
                return
            self.reload()

    def reload(self) -> None:
        required = self.options.config_file is not None
        try:
            config = load_config(self.config_path, required=required)
            access = load_access(config.cped, self.config_path)
        except InvalidInput as error:
            log.error("SIGHUP: %s\nkeeping the previous configuration", error)
            return
        self._warn_start_only_changes(config)
        self.info.config, self.info.access = config, access
        logging.getLogger().setLevel(_log_level(config, self.options))
        for reloaded in self.info.on_reload:
            reloaded()
        try:
            secure_socket(self.paths.socket, config.cped.socket_group)
        except OSError as error:
            log.error("SIGHUP: cannot set the socket's group: %s", error)
        log.info("SIGHUP: configuration reloaded from %s", self.config_path)

    def _warn_start_only_changes(self, config: Config) -> None:
        """Name the changed settings a reload cannot apply: the admin would otherwise
        read "reloaded" and believe cped now uses another store or member name."""
        old, new = self.info.config.cped, config.cped
        changed = [name for name in START_ONLY if getattr(old, name) != getattr(new, name)]
        if changed:
            log.warning(
                "SIGHUP: [cped] %s changed: cped uses the new values from its next start",
                ", ".join(changed),
            )


def _mount_console(app: web.Application) -> None:
    """The web console, on the TLS listener only (it refuses UNIX peers itself)."""
    from cpe.console import mount  # only a cped with a TCP listener pays for it

    mount(app)


def secure_socket(path: Path, group: str | None) -> None:
    """Mode 0660: access to the API is file permission (owner, and the group if set)."""
    if group is not None:
        os.chown(path, -1, grp.getgrnam(group).gr_gid)
    os.chmod(path, SOCKET_MODE)


# ---------------------------------------------------------------------------
# logging and daemonizing


def _log_handler(options: Options, paths: Paths) -> logging.Handler:
    if options.foreground:
        return logging.StreamHandler(sys.stderr)
    # Watched: follows logrotate moving the file away.
    return logging.handlers.WatchedFileHandler(private_file(paths.log_dir / "cped.log", LOG_MODE))


def _configure_logging(handler: logging.Handler, level: int) -> None:
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.server").addFilter(MalformedRequests())


class MalformedRequests(logging.Filter):
    """aiohttp logs a request it cannot parse (a URL or header line over 8190 bytes,
    bytes that are not HTTP) as an error with its traceback; it is the client's
    mistake, answered 400: one warning line, which any peer cannot flood with
    tracebacks before its token is even looked at."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if record.levelno >= logging.ERROR and isinstance(error, HttpProcessingError):
            peer = record.args[0] if isinstance(record.args, tuple) and record.args else ""
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg = "refused a request that is not valid HTTP from %s: %s"
            record.args = (peer or "the UNIX socket", error.message[:200])
            record.exc_info, record.exc_text = None, None
        return True


def _log_level(config: Config, options: Options) -> int:
    if options.verbose:
        return logging.DEBUG
    return LOG_LEVELS[config.cped.log_level]


def _daemonize(pidfile: PidFile, handler: logging.Handler, recorder: SignalRecorder) -> None:
    import daemon  # only the daemonizing path needs python-daemon

    stream = getattr(handler, "stream", None)
    preserved = [pidfile.fileno(), *([stream.fileno()] if stream is not None else [])]
    context = daemon.DaemonContext(
        umask=0o022,
        working_directory="/",
        detach_process=True,
        files_preserve=preserved,
        signal_map=recorder.signal_map(),
    )
    context.open()
