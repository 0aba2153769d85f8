"""cped's API called in-process: the route table, the request checks and the catalog
of cped itself, on a real SQLite store, without HTTP.

``InProcessCped`` is called as ``cpe.client.Client`` is (``cped.get_deployable("shop")``,
arguments shaped by ``cpe.routes``) and answers through ``cpe.dispatch``, as cped's
handlers do: the shell's tests run against cped's own rules.  Bodies, answers and
errors cross as JSON, as on the wire.  Two seams stand in for what a unit test
cannot run: ``FakeSupervisor`` for the DPE processes (start, stop, reload, its
view of a DPE), and ``StoreStream`` for the live event stream, which sends the
store's events then ends as the admin's Ctrl-C would.  ``answer`` sets what one
route answers, for tests of how the shell shows answers the catalog cannot
produce by itself (a status as a DPE would record it, a refusal).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from cpe import dispatch
from cpe.catalog import Catalog
from cpe.client import ROUTE_BY_OPERATION
from cpe.context import Context, DaemonInfo
from cpe.lifecycle import Lifecycle
from cpe.routes import Route
from foundation.config import Config
from foundation.errors import PcloudError, Unavailable, from_dict
from foundation.events import Event
from foundation.store import Store

NOW = 1_700_000_000.0
JsonDict = dict[str, Any]


async def _direct(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """The store thread of the tests: the caller's."""
    return function(*args, **kwargs)


class FakeSupervisor:
    """The DPE processes: what ``cpe.lifecycle`` asks of ``cpe.supervisor.Supervisor``."""

    PID = 4242

    def __init__(self) -> None:
        self.running: set[str] = set()
        self.error: PcloudError | None = None  # what every request raises, if set
        self.calls: list[str] = []
        self.slow_stops: set[str] = set()  # their stops go on after cped answers

    def start(self, name: str) -> asyncio.Future[JsonDict]:
        self._asked("start", name)
        note = "already running" if name in self.running else "started"
        self.running.add(name)
        return _done({"pid": self.PID, "note": note})

    def stop(self, name: str, kill_after: float | None = None) -> asyncio.Future[JsonDict]:
        self._asked("stop", name)
        self.running.discard(name)
        if name in self.slow_stops:
            return asyncio.get_running_loop().create_future()
        return _done({"pid": None, "exit": "exited 0", "killed": False, "left": []})

    def reload(self, name: str) -> JsonDict:
        self._asked("reload", name)
        return {"pid": self.PID, "note": "the DPE re-reads the document"}

    def tell_requests(self, name: str) -> str:
        self._asked("requests", name)
        return f"the DPE (pid {self.PID}) is doing it"

    def info(self, name: str) -> JsonDict:
        alive = name in self.running
        return {"pid": self.PID if alive else None, "alive": alive}

    def _asked(self, action: str, name: str) -> None:
        self.calls.append(f"{action} {name}")
        if self.error is not None:
            raise self.error


def _done(value: JsonDict) -> asyncio.Future[JsonDict]:
    future = asyncio.get_running_loop().create_future()
    future.set_result(value)
    return future


class InProcessCped:
    def __init__(self, store: Store, *, clock: Callable[[], float] = lambda: NOW) -> None:
        self.store = store
        self.supervisor = FakeSupervisor()
        catalog = Catalog(store, clock=clock)
        lifecycle = Lifecycle(catalog, self.supervisor, _direct, clock)  # type: ignore[arg-type]  # the fake supervisor
        self.context = Context(catalog, lifecycle, DaemonInfo(Config()), _direct)
        self.calls: list[str] = []  # each call: its operation, its query when it has one
        self.answers: dict[tuple[str, ...], Any] = {}  # (operation, *names) -> answer or error
        self.on_idle: Callable[[], None] | None = None  # called when a stream has sent all

    def __getattr__(self, operation: str) -> Callable[..., Any]:
        route = ROUTE_BY_OPERATION.get(operation)
        if route is None:
            raise AttributeError(f"cped's API has no operation {operation!r}")
        return partial(self.call, route)

    def answer(self, operation: str, *names: str, answer: Any) -> None:
        """What ``operation`` on ``names`` answers from now on (an exception is raised:
        a refusal, or the connection lost)."""
        self.answers[(operation, *names)] = answer

    def call(self, route: Route, *args: Any, **query: Any) -> Any:
        call = route.shape(args, query)
        self.calls.append(
            f"{route.operation_id} {sorted(query.items())}" if query else route.operation_id
        )
        canned = self.answers.get((route.operation_id, *call.names))
        if isinstance(canned, BaseException):
            raise canned
        if canned is not None:
            return _wire(canned)
        try:
            answer = asyncio.run(
                dispatch.answer(self.context, route, list(call.names), call.query, _wire(call.body))
            )
        except PcloudError as error:
            raise from_dict(_wire(error.to_dict())) from None
        return None if answer.status == 204 else _wire(answer.body)

    def stream_events(self, **filters: Any) -> Iterator[JsonDict]:
        return StoreStream(self).stream_events(**filters)

    # -- what tests set up and look at, in the store ------------------------------

    def record_event(self, event: Event) -> Event:
        """An event in the log, as a DPE would write it."""
        return self.store.append_event(event)

    def tables(self) -> dict[str, list[str]]:
        """Every row of every table: a refused request changes none."""
        with sqlite3.connect(self.store.path) as db:
            names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            return {n: sorted(map(repr, db.execute(f"SELECT * FROM {n}"))) for n in names}


def _wire(value: Any) -> Any:
    """As it would cross the socket: JSON and back."""
    return json.loads(json.dumps(value))


class StoreStream:
    """One event stream (``Environment.connect_events``): the store's events after
    ``after_id``; then the admin presses Ctrl-C, unless ``interrupt()`` (as shutting
    down the real client's socket does) or the test's ``on_idle`` ends it first."""

    def __init__(self, cped: InProcessCped) -> None:
        self.cped = cped
        self.interrupted = False

    def query_events(self, **filters: Any) -> Any:
        return self.cped.query_events(**filters)

    def interrupt(self) -> None:
        self.interrupted = True

    def stream_events(self, **filters: Any) -> Iterator[JsonDict]:
        self.cped.calls.append(f"stream_events {sorted(filters.items())}")
        after = filters.get("after_id") or 0
        subject = {k: filters.get(k) for k in ("deployable", "assembly", "resource")}
        for event in self.cped.store.query_events(after_id=after, limit=10_000, **subject):
            yield event.to_dict()
        if self.cped.on_idle is not None:
            self.cped.on_idle()
        if self.interrupted:
            raise Unavailable("cped closed the event stream")
        raise KeyboardInterrupt  # the admin pressing Ctrl-C
