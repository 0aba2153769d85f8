"""The ``dped`` process: an engine put together, then served until asked to stop.

``DpedSetup`` says where this process's engine comes from: the store
(``dped DEPLOYABLE``: the document, runtime state, events and lease in the
shared store) or a document file (``dped --document FILE``: in-memory runtime,
events printed).  ``serve`` runs the engine: signal handlers only record what
was asked (SIGTERM/SIGINT: stop; SIGHUP: reload; SIGUSR2: read cped's requests; SIGUSR1: hand over -- release the lease and
exit, leaving everything running for the member that takes the deployable over)
and the loop acts on it.

From the store, the DPE's lease holder is ``MEMBER:PID`` (``[cped] member``),
the store's clock judges its lease, a watchdog (``dpe.fencing``) backs its
self-fencing (on SQLite, patient with a store call that waits for another
process's write lock), and with a cluster key (``[cped] key_file``) the assemblies'
keys are fetched from the store when this member does not have them
(``foundation.keyshare``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, TextIO

from dpe.drivers.registry import LocalHost, check_settings, make_driver
from dpe.engine import Engine, Planner, Watchdog
from dpe.engine_timing import EngineOptions
from dpe.fencing import GRACE, FenceWatchdog
from dpe.handshake_slots import HandshakeSlots, SlottedTransport
from dpe.runtime import MemoryRuntime, Patience, Runtime, StoreRuntime
from dpe.transport import SshTransport
from foundation.clock import SystemClock
from foundation.config import Config, DpedSettings, fence_margin
from foundation.document import load_document
from foundation.errors import InvalidInput, PcloudError
from foundation.events import Event
from foundation.keyfiles import AssemblyKeys, load_assembly_keys
from foundation.keyshare import KeyShare, load_cluster_key
from foundation.model import Deployable, parse, validate_name
from foundation.paths import Paths
from foundation.store import DEFAULT_BUSY_TIMEOUT, open_store
from foundation.wakeup import WakeSender

log = logging.getLogger("dpe.dped")
PACEMAKER_TIMEOUT = 10.0  # one crm_simulate run; longer is a failure (the built-in plans)
MIN_STORE_TIMEOUT = 0.5


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1
    USAGE = 2  # bad usage or an invalid document


@dataclass
class DpedSetup:
    """What one dped runs with: its document's source, runtime, options."""

    name: str
    paths: Paths
    read_document: Callable[[], Deployable]  # again on every reload
    runtime: Runtime
    options: EngineOptions
    close: Callable[[], None] = lambda: None
    print_events: TextIO | None = None
    policy_engine: str = "builtin"  # [dped] policy_engine
    handshakes_at_once: int = DpedSettings.ssh_handshakes_at_once
    member: str | None = None  # the cped member this DPE runs under (its lease holder's prefix)
    key_share: KeyShare | None = None  # keys from the store, when this member lacks them
    watchdog: Watchdog | None = None
    local: LocalHost | None = None  # [dped] local_instances_dir, local_bridge_netns

    @classmethod
    def from_store(
        cls, name: str, paths: Paths, config: Config, *, member: str | None = None
    ) -> DpedSetup:
        """From the store of ``config``; ``member``: the one cped names (else the config's)."""
        validate_name(name, "deployable name")
        if member is not None:
            validate_name(member, "member name")
        store = open_store(
            config.cped.store,
            paths.store_file,
            application=f"dped:{name}",
            busy_timeout=store_timeout(config),
        )
        try:
            document = store.get_document(name)  # exists and is valid, or refuse now
            check_settings(document.infrastructure, document.settings)  # exit 2, not 1
            key_file = config.cped.key_file
            share = (
                KeyShare(store, paths.keys_dir, load_cluster_key(key_file)) if key_file else None
            )
        except PcloudError:
            store.close()
            raise
        wake = WakeSender(paths.wake_socket)
        watchdog = FenceWatchdog()

        def close() -> None:
            wake.close()
            store.close()

        return cls(
            name,
            paths,
            lambda: store.get_document(name),
            StoreRuntime(
                store, name, wake.send, store_clock=True, patience=patience(config, watchdog)
            ),
            options_from(config),
            close=close,
            policy_engine=config.dped.policy_engine,
            handshakes_at_once=config.dped.ssh_handshakes_at_once,
            member=member or config.cped.member_name,
            key_share=share,
            watchdog=watchdog,
            local=LocalHost(config.dped.local_instances_dir, config.dped.local_bridge_netns),
        )

    @classmethod
    def from_file(cls, path: Path, paths: Paths, events: TextIO) -> DpedSetup:
        def read() -> Deployable:
            return read_document_file(path)

        document = read()
        runtime = MemoryRuntime(document.name)
        return cls(document.name, paths, read, runtime, EngineOptions(), print_events=events)

    def fetch_keys(self, document: Deployable) -> None:
        """The assemblies' keys from the store, where this member's differ or are missing."""
        if self.key_share is not None:
            fetched = self.key_share.fetch(a.name for a in document.assemblies)
            if fetched:
                log.info("deployable=%s: keys of %s fetched", self.name, ", ".join(fetched))

    def engine(self) -> Engine:
        document = self.read_document()
        self.fetch_keys(document)
        driver = make_driver(document.infrastructure, self.paths, document.settings, self.local)
        engine = Engine(
            document,
            driver=driver,
            transport=SlottedTransport(
                SshTransport(), HandshakeSlots(self.paths.handshake_dir, self.handshakes_at_once)
            ),
            runtime=self.runtime,
            keys=self.keys,
            clock=SystemClock(),
            options=driver_options(self.options, driver),
            planner=planner_for(self.policy_engine),
            holder=f"{self.member}:{os.getpid()}" if self.member else None,
            watchdog=self.watchdog,
        )
        if self.print_events is not None:
            engine.listeners.append(event_printer(self.print_events))
        return engine

    def keys(self, assembly: str) -> AssemblyKeys:
        return load_assembly_keys(self.paths.keys_dir, assembly)


def read_document_file(path: Path) -> Deployable:
    """A validated document from a file (JSON, YAML or the original XML)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise InvalidInput(f"cannot read {path}: {error.strerror or error}") from error
    except UnicodeDecodeError:
        raise InvalidInput(f"cannot read {path}: not UTF-8 text") from None
    return parse(load_document(text))


def planner_for(policy_engine: str) -> Planner | None:
    """The planner of ``[dped] policy_engine`` (None: the built-in one).

    ``pacemaker`` plans with crm_simulate.  Without it (not installed, or it
    fails) the engine plans with the built-in planner and an event says why:
    a deployable is never left without a policy engine.
    """
    if policy_engine != "pacemaker":
        return None
    from dpe.pacemaker import PacemakerPlanner, available

    if not available():
        log.warning("policy_engine = pacemaker, but crm_simulate is not installed")
    log.info("policy engine: pacemaker (crm_simulate)")
    return PacemakerPlanner(timeout=PACEMAKER_TIMEOUT)


def store_timeout(config: Config) -> float:
    """How long one store call of a DPE may take.

    On PostgreSQL, short enough that a call stuck on a lost network returns
    before the DPE must fence itself (the lease's life minus the margin and a
    renewal), so the loop fences itself and the watchdog is left for the worst.
    SQLite's busy wait keeps its default (one host: no network to lose).
    """
    if config.cped.store is None:
        return DEFAULT_BUSY_TIMEOUT
    window = config.cped.lease_ttl - fence_margin(config.cped, config.dped)
    return max(MIN_STORE_TIMEOUT, window - config.dped.lease_renew_interval)


def patience(config: Config, watchdog: FenceWatchdog) -> Patience:
    """On SQLite, a store call may wait out its busy timeout for another process
    of the host holding the write lock (cped stopped in a write): the watchdog
    lets it (``dpe.fencing``).  PostgreSQL's calls end within the lease's window."""
    if config.cped.store is not None:
        return contextlib.nullcontext
    return functools.partial(watchdog.patient, store_timeout(config) + GRACE)


DRIVER_TIMEOUTS = ("create_timeout", "destroy_timeout", "driver_timeout")


def driver_options(options: EngineOptions, driver: object) -> EngineOptions:
    """A driver whose calls take longer (a cloud's API; an image upload before a
    create) says how long, in attributes named as the engine's options."""
    longer: dict[str, Any] = {}
    for name in DRIVER_TIMEOUTS:
        value = getattr(driver, name, None)
        if isinstance(value, float) and value > getattr(options, name):
            longer[name] = value
    return dataclasses.replace(options, **longer) if longer else options


def options_from(config: Config) -> EngineOptions:
    ttl, renew = config.cped.lease_ttl, config.dped.lease_renew_interval
    return EngineOptions(
        lease_ttl=ttl,
        lease_renew=renew,
        lease_wait=ttl + 2 * renew,
        fence_margin=fence_margin(config.cped, config.dped),
    )


def event_printer(stream: TextIO) -> Callable[[Event], None]:
    def show(event: Event) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(event.time))
        millis = f"{event.time % 1:.3f}"[1:]
        print(f"{stamp}{millis} {event.subject} {event.state}: {event.reason}", file=stream)
        stream.flush()

    return show


class Requests:
    """What signals asked for, recorded by the handlers and acted on by the loop."""

    STOP = "stop"
    RELOAD = "reload"
    HANDOVER = "handover"
    REQUESTS = "requests"  # cped recorded a request (a clean-up, a service move) for this DPE

    def __init__(self) -> None:
        self.pending: list[str] = []
        self.arrived = asyncio.Event()
        self.handover = asyncio.Event()  # also seen while the engine is still starting

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        for signum, request in (
            (signal.SIGTERM, self.STOP),
            (signal.SIGINT, self.STOP),
            (signal.SIGHUP, self.RELOAD),
            (signal.SIGUSR1, self.HANDOVER),
            (signal.SIGUSR2, self.REQUESTS),
        ):
            loop.add_signal_handler(signum, self.record, request)

    def record(self, request: str) -> None:
        self.pending.append(request)
        self.arrived.set()
        if request == self.HANDOVER:
            self.handover.set()

    async def next(self) -> str:
        while not self.pending:
            self.arrived.clear()
            await self.arrived.wait()
        return self.pending.pop(0)


async def serve(
    setup: DpedSetup,
    *,
    leave_running: bool = False,
    clear_failed: bool = False,
    stop_only: bool = False,
) -> ExitCode:
    """Run the deployable until asked to stop; the exit code says how it ended.
    ``stop_only``: stop what a previous DPE left (adopted, never created), then exit."""
    requests = Requests()
    requests.install(asyncio.get_running_loop())
    engine = setup.engine()
    if not await _start(engine, requests, clear_failed, stop_only):
        log.info("deployable=%s: handed over before it started", setup.name)
        return ExitCode.OK
    if stop_only:
        log.info("deployable=%s: stopping what is left (pid %d)", setup.name, os.getpid())
        return await _stop(engine, requests, leave_running=False, stop_only=True)
    log.info("deployable=%s: running (pid %d)", setup.name, os.getpid())
    while True:
        request = await _next_request(requests, engine)
        if request is None:
            log.error("deployable=%s: %s: exiting", setup.name, engine.halt_reason)
            await engine.shutdown(release_lease=False)
            return ExitCode.FAILURE
        if request == Requests.RELOAD:
            await _reload(setup, engine)
            continue
        if request == Requests.HANDOVER:
            await engine.shutdown()  # the lease is released: the next member adopts at once
            log.info("deployable=%s: handed over, instances left running", setup.name)
            return ExitCode.OK
        if request == Requests.REQUESTS:
            engine.take_requests()
            continue
        return await _stop(engine, requests, leave_running)


async def _start(engine: Engine, requests: Requests, clear_failed: bool, stop_only: bool) -> bool:
    """Start the engine; False if a handover was asked first (nothing was done)."""
    starting = asyncio.ensure_future(engine.start(clear_failed=clear_failed, stop_only=stop_only))
    handover = asyncio.ensure_future(requests.handover.wait())
    try:
        await asyncio.wait({starting, handover}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        handover.cancel()
    if not starting.done():
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError, PcloudError):
            await starting
        await engine.shutdown()
        return False
    try:
        starting.result()
    except BaseException:
        # The lease is kept until the process exits: released now, cped would take the
        # DPE for one that lost it and kill it before it says why it could not start;
        # exited, cped releases it and reports the error (the last line of the log).
        await engine.shutdown(release_lease=False)
        raise
    return True


async def _next_request(requests: Requests, engine: Engine) -> str | None:
    """The next request, or None when the engine lost its lease."""
    waiting = asyncio.ensure_future(requests.next())
    halted = asyncio.ensure_future(engine.halted.wait())
    try:
        await asyncio.wait({waiting, halted}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (waiting, halted):
            task.cancel()
    if waiting.done() and not waiting.cancelled():
        return waiting.result()
    return None


async def _reload(setup: DpedSetup, engine: Engine) -> None:
    try:
        document = setup.read_document()
        setup.fetch_keys(document)
        await engine.reload(document)
    except PcloudError as error:
        reason = f"reload refused, keeping the current document: {error}"
        log.error("deployable=%s: %s", setup.name, reason)
        engine.cell.note(reason)  # an event: deployable_reload --wait ends on it
    else:
        log.info("deployable=%s: document reloaded", setup.name)


async def _stop(
    engine: Engine, requests: Requests, leave_running: bool, *, stop_only: bool = False
) -> ExitCode:
    if leave_running:
        await engine.shutdown()
        log.info("deployable=%s: exiting, instances left running", engine.name)
        return ExitCode.OK
    stopping = asyncio.ensure_future(engine.stop())
    again = asyncio.ensure_future(_asked_again(requests, stop_only))
    await asyncio.wait({stopping, again}, return_when=asyncio.FIRST_COMPLETED)
    if stopping.done():
        again.cancel()
        stopping.result()
        return ExitCode.OK
    log.warning("deployable=%s: asked again: exiting before the stop is complete", engine.name)
    stopping.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await stopping
    await engine.shutdown()
    return ExitCode.FAILURE


async def _asked_again(requests: Requests, stop_only: bool) -> str:
    """The next request during a stop.  A stop-only DPE's first stop request is
    cped's SIGTERM, sent once it holds the lease: it asks for what it does already."""
    request = await requests.next()
    if stop_only and request == Requests.STOP:
        return await requests.next()
    return request
