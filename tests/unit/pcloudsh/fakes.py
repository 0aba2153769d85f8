"""Hand-written fakes for pcloudsh's seams: the daemon control, the key store, image
files, timers, and a cped that is not running.

cped itself is not faked: the shell's tests call cped's own rules in-process on a
temporary store (``tests.unit.inprocess``).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

from dpe.agent_metadata import AgentInfo, parse_metadata, parse_spec
from foundation.errors import Conflict, InvalidInput, Unavailable
from foundation.paths import Paths
from pcloudsh.api import CpedUnreachable

JsonDict = dict[str, Any]


class FakeTimers:
    """``Environment.timer``: nothing fires until the test says time has passed."""

    def __init__(self) -> None:
        self.pending: list[tuple[float, Callable[[], None]]] = []

    def start(self, seconds: float, action: Callable[[], None]) -> FakeTimers.Timer:
        entry = (seconds, action)
        self.pending.append(entry)
        return FakeTimers.Timer(self, entry)

    def fire(self) -> None:
        for _seconds, action in list(self.pending):
            action()
        self.pending.clear()

    class Timer:
        def __init__(self, timers: FakeTimers, entry: tuple[float, Callable[[], None]]) -> None:
            self.timers, self.entry = timers, entry

        def cancel(self) -> None:
            if self.entry in self.timers.pending:
                self.timers.pending.remove(self.entry)


class FakeTime:
    """``Environment.monotonic`` and ``sleep``: time passes only by sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class FakeImages:
    """JEOS image files (``Environment.make_images``): records in memory, each step reported."""

    def __init__(self) -> None:
        self.files: dict[str, JsonDict] = {}
        self.fail: BaseException | None = None  # raised halfway through a build or import
        self.calls: list[str] = []

    def build(
        self, name: str, release: str, arch: str, packages: Any, progress: Callable[..., None]
    ) -> JsonDict:
        self.calls.append(f"build {name} {release} {arch} {list(packages)}")
        return self._make(name, release, arch, progress, ("check", "debootstrap", "convert"))

    def import_image(
        self, name: str, file: Any, progress: Callable[..., None], **options: Any
    ) -> JsonDict:
        self.calls.append(f"import {name} {file} {sorted(options.items())}")
        return self._make(name, options["release"], options["arch"], progress, ("check", "convert"))

    def delete(self, name: str) -> bool:
        self.calls.append(f"delete {name}")
        return self.files.pop(name, None) is not None

    def _make(
        self, name: str, release: str, arch: str, progress: Callable[..., None], phases: Any
    ) -> JsonDict:
        if name in self.files:
            raise Conflict(f"JEOS {name!r} already exists in /images")
        for phase in phases:
            progress(phase, 0.0)
            if phase == "debootstrap":
                progress(phase, 0.5)
            if self.fail is not None and phase != "check":
                raise self.fail  # the builder removes its work: nothing is kept
            progress(phase, 1.0)
        record = {
            "name": name,
            "path": f"/images/{name}/disk.qcow2",
            "kernel": f"/images/{name}/vmlinuz",
            "size": 300 * 1024 * 1024,
            "virtual_size": 4 << 30,
            "checksum": "sha256:00",
            "release": release,
            "arch": arch,
            "created": 1_699_990_000.0,
            "kind": "image",
            "format": "qcow2",
        }
        self.files[name] = record
        return dict(record)


class FakeDisks:
    """Assembly disks (``Environment.make_disks``): paths in memory, each step reported."""

    def __init__(self) -> None:
        self.files: dict[str, JsonDict] = {}
        self.fail: BaseException | None = None  # raised while the disk is customized
        self.calls: list[str] = []

    def create(
        self,
        assembly: str,
        assembly_uuid: str,
        jeos: str,
        overlay: bool,
        progress: Callable[..., None],
    ) -> JsonDict:
        self.calls.append(f"create {assembly} {jeos} {'overlay' if overlay else 'full'}")
        if assembly in self.files:
            raise Conflict(f"assembly {assembly!r} already has a disk image")
        for phase in ("copy", "customize"):
            progress(phase, 0.0)
            if self.fail is not None and phase == "customize":
                raise self.fail  # the builder removes its staged file: nothing is kept
            progress(phase, 1.0)
        path = f"/images/assemblies/{assembly}.qcow2"
        record = {
            "assembly": assembly,
            "path": path,
            "jeos": jeos,
            "backing": f"/images/{jeos}/disk.qcow2" if overlay else None,
            "machine_id": assembly_uuid,
        }
        self.files[assembly] = record
        return dict(record)

    def delete(self, assembly: str) -> bool:
        self.calls.append(f"delete {assembly}")
        return self.files.pop(assembly, None) is not None


class DownCped:
    """cped not running: every call fails to connect."""

    def __getattr__(self, name: str) -> Any:
        def unreachable(*args: Any, **kwargs: Any) -> Any:
            raise CpedUnreachable("cped is not running (no answer on its socket)")

        return unreachable


class InterruptedWhileFreed:
    """Like M2Crypto's buffers, freed in ``__del__``: Ctrl-C comes meanwhile."""

    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # the handler runs before __del__ returns


class FakeKeys:
    def __init__(self) -> None:
        self.made: set[str] = set()
        self.fail_on: str | None = None
        self.interrupt_after: int | None = None  # Ctrl-C once this many are made
        # Ctrl-C once this many are made, while a finalizer runs (as M2Crypto frees a buffer)
        self.interrupt_in_finalizer_after: int | None = None
        self.interrupt_in_finalizer_on: str | None = None  # the same, writing this one's keys
        self.written: list[str] = []  # by write_many, in order

    def exists(self, assembly: str) -> bool:
        return assembly in self.made

    def write(self, assembly: str) -> None:
        if assembly == self.fail_on:
            raise Unavailable("cannot write keys")
        self.made.add(assembly)
        if assembly == self.interrupt_in_finalizer_on:
            InterruptedWhileFreed()

    def write_many(self, assemblies: Any, on_made: Callable[[int], None]) -> None:
        written: list[str] = []
        try:
            for assembly in assemblies:
                self._interrupt_if_due(len(written))
                self.write(assembly)
                written.append(assembly)
                self.written.append(assembly)
                on_made(len(written))
        except BaseException:
            self.made.difference_update(written)
            raise

    def _interrupt_if_due(self, made: int) -> None:
        if made == self.interrupt_after:
            raise KeyboardInterrupt
        if made == self.interrupt_in_finalizer_after:
            InterruptedWhileFreed()  # dropped at once: its __del__ runs here

    def delete_many(self, assemblies: Any) -> None:
        self.made.difference_update(assemblies)

    def delete(self, assembly: str) -> None:
        self.made.discard(assembly)


class FakeDaemon:
    def __init__(self, running: bool = False) -> None:
        self.running = running
        self.started_deployables: list[str] = []  # whose DPEs outlive cped

    def start(self, timeout: float) -> dict[str, Any]:
        self.start_timeout = timeout
        already, self.running = self.running, True
        return {"pid": 4242, "already_running": already}

    def stop(self) -> dict[str, Any]:
        was, self.running = self.running, False
        return {"pid": 4242, "was_running": was, "still_running": self.started_deployables}

    def status(self) -> dict[str, Any] | None:
        health = {"status": "ok", "version": "0.7.0", "pid": 4242, "uptime": 75.0}
        return health if self.running else None


def fake_paths() -> Paths:
    from pathlib import Path

    base = Path("/nonexistent/pcloud-test")
    return Paths(base / "etc", base / "state", base / "run")


DUMMY_METADATA = """<?xml version="1.0"?>
<resource-agent name="Dummy" version="1.0">
<shortdesc lang="en">Example stateless resource agent</shortdesc>
<parameters>
<parameter name="state" unique="1"><shortdesc lang="en">State file</shortdesc>
<content type="string" default="/run/Dummy.state" /></parameter>
<parameter name="fake" required="1"><shortdesc lang="en">Fake attribute</shortdesc>
<content type="string" default="dummy" /></parameter>
</parameters>
<actions>
<action name="start" timeout="20s" />
<action name="stop" timeout="25s" />
<action name="monitor" timeout="15s" interval="7s" depth="0" />
<action name="meta-data" timeout="5s" />
</actions>
</resource-agent>
"""


class FakeAgents:
    """The host's agents as the shell reads them: ``ocf:heartbeat:Dummy`` with its
    meta-data, ``ocf:acme:Quiet`` that gives none, and ``lsb:ssh``."""

    def __init__(self) -> None:
        self.read: list[str] = []

    def __call__(self, text: str) -> AgentInfo:
        self.read.append(text)
        spec = parse_spec(text)
        if str(spec) == "ocf:heartbeat:Dummy":
            return parse_metadata(spec, DUMMY_METADATA)
        if str(spec) == "ocf:acme:Quiet":
            return parse_metadata(spec, "")
        if str(spec) == "lsb:ssh":
            return AgentInfo(spec, description=str(spec))
        raise InvalidInput(f"no such agent on this host: {spec} (a fake host)")
