"""Everything a command touches outside itself, injected (streams, cped, keys, images).

``Environment()`` is the real one; tests build one with string streams, a
fixed console width and hand-written fakes for cped, the daemon control and
the key store.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO, cast

from foundation import paths as pathsmod

if TYPE_CHECKING:
    from dpe.agent_metadata import AgentInfo
    from foundation.store import Store
    from pcloudsh.api import Api
    from pcloudsh.follow import EventSource

API_TIMEOUT = 30.0


class KeyStore(Protocol):
    """An assembly's key pairs (root login key and SSH host key)."""

    def exists(self, assembly: str) -> bool: ...
    def write(self, assembly: str) -> None: ...
    def write_many(self, assemblies: Sequence[str], on_made: Callable[[int], None]) -> None: ...
    def delete_many(self, assemblies: Sequence[str]) -> None: ...
    def delete(self, assembly: str) -> None: ...


class DaemonControl(Protocol):
    """Starting, stopping and asking about cped itself."""

    def start(self, timeout: float) -> dict[str, Any]: ...  # until cped answers
    def stop(self) -> dict[str, Any]: ...
    def status(self) -> dict[str, Any] | None: ...


Report = Callable[[str, float], None]  # progress of a long step: (phase, fraction)


class ImageStore(Protocol):
    """JEOS image files on this machine (``images.jeos``); records are dicts."""

    def build(
        self, name: str, release: str, arch: str, packages: Sequence[str], progress: Report
    ) -> dict[str, Any]: ...
    def import_image(
        self, name: str, file: Path, progress: Report, **options: Any
    ) -> dict[str, Any]: ...
    def delete(self, name: str) -> bool: ...


class DiskStore(Protocol):
    """Assembly disks on this machine (``images.customize``); records are dicts."""

    def create(
        self, assembly: str, assembly_uuid: str, jeos: str, overlay: bool, progress: Report
    ) -> dict[str, Any]: ...
    def delete(self, assembly: str) -> bool: ...


class Timer(Protocol):
    def cancel(self) -> None: ...


class DocumentCodec(Protocol):
    """Deployable documents as text: json, yaml or the original XML."""

    def load(self, text: str, fmt: str | None) -> dict[str, Any]: ...
    def dump(self, doc: dict[str, Any], fmt: str) -> str: ...


def width_wanted(environ: Mapping[str, str]) -> int | None:
    """COLUMNS when set to a width (a terminal's own size otherwise; a pipe's: unlimited)."""
    columns = environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else None


def color_wanted(environ: Mapping[str, str]) -> bool | None:
    """False when NO_COLOR is set and not empty (no-color.org); None: colour at a terminal."""
    return False if environ.get("NO_COLOR") else None


def _read_agent(spec: str) -> AgentInfo:
    from dpe.agent_metadata import read_agent

    return read_agent(spec)


def _connect(paths: pathsmod.Paths) -> Api:
    from pcloudsh.api import connect

    return connect(paths, API_TIMEOUT)


def _connect_events(paths: pathsmod.Paths) -> EventSource:
    from pcloudsh.api import connect_events

    return cast("EventSource", connect_events(paths))


def _timer(seconds: float, action: Callable[[], None]) -> Timer:
    """Run ``action`` in ``seconds`` from another thread (ends a ``--timeout``)."""
    import threading

    timer = threading.Timer(seconds, action)
    timer.daemon = True
    timer.start()
    return timer


def _keys(paths: pathsmod.Paths) -> KeyStore:
    from pcloudsh.keystore import FileKeyStore

    return FileKeyStore(paths.keys_dir)


def _daemon(paths: pathsmod.Paths) -> DaemonControl:
    from pcloudsh.daemon_control import CpedControl

    return CpedControl(paths)


def _codec() -> DocumentCodec:
    from pcloudsh.codec import DpeCodec  # YAML and XML parsers: only when a file is read

    return DpeCodec()


def _images(paths: pathsmod.Paths) -> ImageStore:
    from pcloudsh.imagestore import JeosImages

    return JeosImages(paths)


def _disks(paths: pathsmod.Paths) -> DiskStore:
    from pcloudsh.imagestore import AssemblyDisks

    return AssemblyDisks(paths)


def _progress(stream: TextIO, title: str) -> AbstractContextManager[Report]:
    from pcloudsh.progress import show_progress

    return show_progress(stream, title)


def _store(paths: pathsmod.Paths, where: str | None) -> AbstractContextManager[Store]:
    """The store named by ``where`` (a postgresql:// URL or an SQLite file), else the
    one cped is configured with; closed on exit."""
    from contextlib import closing

    from foundation.config import load_config
    from foundation.store import Store

    file = _sqlite_file(paths, where)
    if file is not None:
        return closing(Store.open(file))
    if where:
        from foundation.store_pg import check_url

        check_url(where)
    url = where or load_config(paths.config_file).cped.store
    return closing(Store.open_url(str(url), application="pcloudsh"))


def _sqlite_file(paths: pathsmod.Paths, where: str | None) -> Path | None:
    """The SQLite file ``_store`` opens for ``where``; None for PostgreSQL."""
    from foundation.config import load_config

    if where:
        return None if "://" in where else Path(where).absolute()
    return None if load_config(paths.config_file).cped.store else paths.store_file


def _exec(argv: Sequence[str]) -> None:
    from pcloudsh.programs import exec_program

    exec_program(argv)


def _run(argv: Sequence[str]) -> int:
    from pcloudsh.programs import run_program

    return run_program(argv)


@dataclass
class Environment:
    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    paths: pathsmod.Paths = field(default_factory=pathsmod.resolve)
    width: int | None = field(
        default_factory=lambda: width_wanted(os.environ)
    )  # None: the terminal's
    color: bool | None = field(default_factory=lambda: color_wanted(os.environ))
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep  # between polls (--wait, --watch)
    monotonic: Callable[[], float] = time.monotonic  # deadlines (--wait --timeout)
    connect: Callable[[pathsmod.Paths], Api] = _connect
    connect_events: Callable[[pathsmod.Paths], EventSource] = _connect_events  # one per stream
    timer: Callable[[float, Callable[[], None]], Timer] = _timer
    make_keys: Callable[[pathsmod.Paths], KeyStore] = _keys
    make_daemon: Callable[[pathsmod.Paths], DaemonControl] = _daemon
    make_codec: Callable[[], DocumentCodec] = _codec
    read_agent: Callable[[str], AgentInfo] = _read_agent  # an agent of this host (meta-data)
    make_images: Callable[[pathsmod.Paths], ImageStore] = _images
    make_disks: Callable[[pathsmod.Paths], DiskStore] = _disks
    show_progress: Callable[[TextIO, str], AbstractContextManager[Report]] = _progress
    store_at: Callable[[pathsmod.Paths, str | None], AbstractContextManager[Store]] = _store
    exec_program: Callable[[Sequence[str]], None] = _exec  # one-shot: becomes the program
    run_program: Callable[[Sequence[str]], int] = _run  # the shell: runs it, its exit status
    _api: Api | None = field(default=None, init=False, repr=False)

    def api(self) -> Api:
        """The connection to cped, made on first use."""
        if self._api is None:
            self._api = self.connect(self.paths)
        return self._api

    @property
    def keys(self) -> KeyStore:
        return self.make_keys(self.paths)

    @property
    def daemon(self) -> DaemonControl:
        return self.make_daemon(self.paths)

    @property
    def images(self) -> ImageStore:
        return self.make_images(self.paths)

    @property
    def disks(self) -> DiskStore:
        return self.make_disks(self.paths)

    @property
    def codec(self) -> DocumentCodec:
        return self.make_codec()

    def open_store(self, where: str | None) -> AbstractContextManager[Store]:
        """The store itself (store_* commands), not cped's API."""
        return self.store_at(self.paths, where)

    def store_file(self, where: str | None) -> Path | None:
        """The SQLite file ``open_store`` opens (and creates if absent); None for PostgreSQL."""
        return _sqlite_file(self.paths, where)

    @property
    def history_file(self) -> Path:
        return self.paths.state_dir / "pcloudsh_history"
