"""cped's HTTP API: thin aiohttp handlers over the catalog.

Routes come from ``cpe.openapi.ROUTES`` (the OpenAPI document is their source
of truth; a test checks every route has a handler).  Store work runs on one
dedicated thread, so SQLite's busy waits never stall the event loop and calls
on the single connection are serialised.  Every error leaves as JSON
``{code, message, details}``; a body that is not a JSON object, a wrong content
type, an unknown field or query parameter is a 400 with a clear message, never
a 500.  Every change is logged with who made it: the peer's uid and pid
(SO_PEERCRED) on the UNIX socket, the address on the TLS listener.  With an
``Access`` in ``DaemonInfo`` (cped always has one) every request is checked
first (``cpe.access``): a local peer by its uid, a TCP one by its bearer token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from cpe import services
from cpe.access import Access, Peer
from cpe.catalog import EVENT_FILTERS, Catalog, parse_event_query, parse_flag
from cpe.cluster import Cluster
from cpe.eventfeed import EventFeed, PgNotifications, notifications_for
from cpe.hook import EventHook
from cpe.lifecycle import STOP_WAIT, Lifecycle
from cpe.membership import MemberOptions, Membership, StoreClock, in_thread
from cpe.openapi import PREFIX, ROUTES, STATUS_OF_CODE, Operation, openapi_document
from cpe.retention import prune_forever
from cpe.supervisor import Launcher, StoreCall, Supervisor, SupervisorOptions
from cpe.whatif import cib_answer, parse_fail_query, read_recorded, simulate_answer
from foundation import __version__
from foundation.clock import Clock, SystemClock
from foundation.config import Config
from foundation.errors import Code, Conflict, InvalidInput, PcloudError, Unavailable
from foundation.events import Event
from foundation.keyshare import KeyShare
from foundation.model import parse_duration
from foundation.store import Store

log = logging.getLogger("cped.api")

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_BODY = 4 * 1024 * 1024
STREAM_BATCH = 500
HOOK_BATCH = 100
CHANGING_METHODS = ("POST", "PUT", "DELETE", "PATCH")
MAX_WAIT = 600.0  # the longest a stop request may be asked to wait
MAX_KILL_AFTER = 3600.0


@dataclass
class DaemonInfo:
    """What health reports; the daemon replaces ``config`` and ``access`` on reload."""

    config: Config
    started: float = field(default_factory=time.monotonic)
    access: Access | None = None  # None: no access check (in-process tests)


@dataclass(frozen=True)
class StreamSettings:
    keepalive: float = 5.0  # seconds between keepalive comments on an idle stream
    poll_interval: float = 0.1  # how often the event log is checked for new events


CATALOG = web.AppKey("catalog", Catalog)
STORE = web.AppKey("store", Store)
STORE_THREAD = web.AppKey("store_thread", ThreadPoolExecutor)
FEED = web.AppKey("feed", EventFeed)
INFO = web.AppKey("info", DaemonInfo)
STREAMS = web.AppKey("streams", StreamSettings)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
CLUSTER = web.AppKey("cluster", Cluster)
MEMBER_THREAD = web.AppKey("member_thread", ThreadPoolExecutor)


def make_app(
    store: Store,
    info: DaemonInfo,
    streams: StreamSettings | None = None,
    *,
    launcher: Launcher | None = None,
    keys_dir: Path | None = None,
    clock: Clock | None = None,
    member: MemberOptions | None = None,
    key_share: KeyShare | None = None,
    member_store: Store | None = None,
) -> web.Application:
    """The API application; the caller owns (and closes) the store.

    With a ``launcher`` the application supervises DPEs (``cpe.supervisor``)
    for as long as it runs; without one, start, stop and reload answer 503.
    With ``member`` it is one member among those sharing the store
    (``cpe.cluster``): it runs only the deployables placed on it; its
    heartbeats go through ``member_store`` (a connection of their own, on a
    thread of their own), else the API's.
    """
    app = web.Application(middlewares=[_audit, _errors, _access], client_max_size=MAX_BODY)
    app[STORE] = store
    app[CATALOG] = Catalog(store, keys_dir=keys_dir)
    app[STORE_THREAD] = ThreadPoolExecutor(1, thread_name_prefix="store")
    app[INFO] = info
    app[STREAMS] = streams or StreamSettings()
    app[FEED] = EventFeed(
        partial(_in_store, app, store.last_event_id),
        app[STREAMS].poll_interval,
        notifications_for(store),
    )
    cluster = None
    if member is not None:
        beats: StoreCall = partial(_in_store, app)
        if member_store is not None:
            app[MEMBER_THREAD] = ThreadPoolExecutor(1, thread_name_prefix="member")
            beats = in_thread(app[MEMBER_THREAD])
        membership = Membership(member_store or store, beats, member, clock=clock)
        cluster = app[CLUSTER] = Cluster(store, membership, partial(_in_store, app), key_share)
        clock = clock or StoreClock(membership)
    supervisor = None
    if launcher is not None:
        supervisor = Supervisor(
            store,
            launcher,
            in_store=partial(_in_store, app),
            options=lambda: SupervisorOptions.from_config(app[INFO].config),
            clock=clock,
            host=cluster.membership.name if cluster else None,
            owns=cluster.membership.owns if cluster else None,
            holder_gone=cluster.membership.holder_gone if cluster else None,
        )
    wall = (clock or SystemClock()).time
    app[LIFECYCLE] = Lifecycle(
        app[CATALOG], supervisor, partial(_in_store, app), wall, cluster=cluster
    )
    app.cleanup_ctx.append(_background)
    app.on_shutdown.append(_close_streams)
    for op in ROUTES:
        app.router.add_route(op.method, PREFIX + op.path, _checked(op, HANDLERS[op.operation_id]))
    return app


async def _background(app: web.Application) -> AsyncIterator[None]:
    """The event feed and the event hook run for the application's lifetime."""
    store = app[STORE]
    cluster = app.get(CLUSTER)
    if cluster is not None:
        await cluster.membership.join()  # a member name in use: cped does not start
    hook = EventHook(
        app[FEED],
        partial(_in_store, app, _events_after, store),
        lambda: app[INFO].config.cped,
    )
    newest = await _in_store(app, store.last_event_id)
    waker = app[FEED].waker
    tasks = [
        asyncio.create_task(app[FEED].run(), name="event-feed"),
        asyncio.create_task(hook.run(newest), name="event-hook"),
        asyncio.create_task(_prune_events(app), name="event-retention"),
    ]
    if isinstance(waker, PgNotifications):
        tasks.append(asyncio.create_task(waker.run(), name="event-notifications"))
    supervisor = app[LIFECYCLE].supervisor
    if supervisor is not None:
        tasks.append(asyncio.create_task(supervisor.run(), name="dpe-supervisor"))
    if cluster is not None:
        tasks += cluster_tasks(cluster, supervisor)
    yield
    if cluster is not None:
        await cluster.leave(supervisor, app[INFO].config.cped.shutdown_timeout)
    await app[FEED].close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if supervisor is not None:
        supervisor.close()  # DPEs keep running: the next cped adopts them
    app[STORE_THREAD].shutdown(wait=True)
    if MEMBER_THREAD in app:
        app[MEMBER_THREAD].shutdown(wait=True)


def cluster_tasks(cluster: Cluster, supervisor: Supervisor | None) -> list[asyncio.Task[None]]:
    """The heartbeat (and requests from other members), and keys published once."""
    on_request = cluster.on_request(supervisor) if supervisor is not None else None
    return [
        asyncio.create_task(cluster.membership.run(on_request), name="member-heartbeat"),
        asyncio.create_task(cluster.publish_all_keys(), name="keys-published"),
    ]


async def _prune_events(app: web.Application) -> None:
    await prune_forever(
        partial(_in_store, app, app[STORE].prune_events),
        lambda: app[INFO].config.cped.event_retention,
        app[LIFECYCLE].clock,
    )


def _events_after(store: Store, after_id: int) -> list[Event]:
    return store.query_events(after_id=after_id, limit=HOOK_BATCH)


async def _close_streams(app: web.Application) -> None:
    await app[FEED].close()  # ends every event stream, so shutdown does not wait for them


async def _in_store(app: web.Application, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(app[STORE_THREAD], partial(fn, *args, **kwargs))


async def _do(request: web.Request, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a catalog method on the store thread."""
    return await _in_store(request.app, fn, request.app[CATALOG], *args, **kwargs)


# ---------------------------------------------------------------------------
# middlewares


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except PcloudError as error:
        return error_response(error)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return _http_error(request, error)
    except Exception:
        log.exception("internal error on %s %s", request.method, request.path)
        internal = PcloudError("internal error in cped (see its log)")
        return error_response(internal)


def error_response(error: PcloudError) -> web.Response:
    status = STATUS_OF_CODE.get(error.code, 500)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return web.json_response(error.to_dict(), status=status, headers=headers)


def _http_error(request: web.Request, error: web.HTTPException) -> web.Response:
    code, message = Code.INVALID, f"{error.reason}: {request.method} {request.path}"
    if error.status == 404:
        code, message = Code.NOT_FOUND, f"no such route: {request.method} {request.path}"
    elif error.status == 405:
        message = f"method {request.method} is not allowed on {request.path}"
    elif error.status == 413:
        message = f"the request body is too large (limit {MAX_BODY} bytes)"
    body = {"code": str(code), "message": message, "details": None}
    return web.json_response(body, status=error.status)


@web.middleware
async def _access(request: web.Request, handler: Handler) -> web.StreamResponse:
    access = request.app[INFO].access
    if access is None:
        return await handler(request)
    peer = peer_of(request)
    try:
        if peer.address is None:
            access.check_peer(peer)
        else:
            access.check_token(request.headers.get("Authorization"))
    except PcloudError as error:
        log.warning("refused %s: %s %s: %s", peer.describe(), request.method, request.path, error)
        raise
    return await handler(request)


@web.middleware
async def _audit(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method not in CHANGING_METHODS:
        return await handler(request)
    response = await handler(request)
    log.info(
        "change by %s: %s %s -> %d",
        peer_of(request).describe(),
        request.method,
        request.path_qs,
        response.status,
    )
    return response


def peer_of(request: web.Request) -> Peer:
    """Who is on the other end: SO_PEERCRED on a UNIX socket, else the TCP address."""
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport else None
    if sock is None:
        return Peer()
    if sock.family != socket.AF_UNIX:
        host, port = transport.get_extra_info("peername")[:2] if transport else ("?", 0)
        return Peer(address=f"{host}:{port}")
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return Peer(uid=uid, gid=gid, pid=pid)


def _checked(op: Operation, handler: Handler) -> Handler:
    """Refuse unknown query parameters and missing required ones before the handler."""

    async def checked(request: web.Request) -> web.StreamResponse:
        problems = [
            {"path": key, "message": "unknown query parameter"}
            for key in request.query
            if key not in op.query_names
        ]
        problems += [
            {"path": p.name, "message": "required query parameter"}
            for p in op.query
            if p.required and p.name not in request.query
        ]
        if problems:
            lines = "\n  ".join(f"{p['path']}: {p['message']}" for p in problems)
            raise InvalidInput(f"invalid query:\n  {lines}", details=problems)
        return await handler(request)

    return checked


# ---------------------------------------------------------------------------
# request and response helpers


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object, or InvalidInput saying exactly what is wrong."""
    if request.content_type != "application/json":
        raise InvalidInput(
            f"the request body must be JSON (Content-Type: application/json),"
            f" not {request.content_type!r}"
        )
    raw = await request.read()
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
    except UnicodeDecodeError:
        raise InvalidInput("the request body is not UTF-8 text") from None
    except ValueError as error:
        raise InvalidInput(f"malformed JSON body: {error}") from None
    except RecursionError:
        raise InvalidInput("malformed JSON body: nested too deeply") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"the JSON body must be an object, not {type(data).__name__}")
    return data


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


def _no_content() -> web.Response:
    return web.Response(status=204)


def _name(request: web.Request, key: str = "name") -> str:
    return request.match_info[key]


# ---------------------------------------------------------------------------
# handlers (one per operation in cpe.openapi.ROUTES)


async def health(request: web.Request) -> web.Response:
    info = request.app[INFO]
    return _json(
        {
            "status": "ok",
            "version": __version__,
            "pid": os.getpid(),
            "uptime": round(time.monotonic() - info.started, 3),
            "config": str(info.config.source) if info.config.source else None,
            "store": request.app[STORE].location,
        }
    )


async def openapi(request: web.Request) -> web.Response:
    return _json(openapi_document())


async def cluster_status(request: web.Request) -> web.Response:
    cluster = request.app.get(CLUSTER)
    if cluster is None:
        raise Unavailable("this API runs without membership (no cluster to show)")
    return _json(await cluster.status())


async def list_jeos(request: web.Request) -> web.Response:
    return _json(await _do(request, Catalog.list_jeos))


async def create_jeos(request: web.Request) -> web.Response:
    return _json(await _do(request, Catalog.create_jeos, await json_body(request)), 201)


async def get_jeos(request: web.Request) -> web.Response:
    return _json(await _do(request, Catalog.get_jeos, _name(request)))


async def delete_jeos(request: web.Request) -> web.Response:
    await _do(request, Catalog.delete_jeos, _name(request))
    return _no_content()


async def list_assemblies(request: web.Request) -> web.Response:
    return _json(await _do(request, Catalog.list_assemblies))


async def create_assembly(request: web.Request) -> web.Response:
    return _json(await _do(request, Catalog.create_assembly, await json_body(request)), 201)


async def get_assembly(request: web.Request) -> web.Response:
    return _json(await _do(request, Catalog.get_assembly, _name(request)))


async def put_assembly(request: web.Request) -> web.Response:
    body = await json_body(request)
    return _json(await _do(request, Catalog.put_assembly, _name(request), body))


async def delete_assembly(request: web.Request) -> web.Response:
    await _do(request, Catalog.delete_assembly, _name(request))
    return _no_content()


async def add_resource(request: web.Request) -> web.Response:
    body = await json_body(request)
    return _json(await _do(request, Catalog.add_resource, _name(request, "assembly"), body), 201)


async def update_resource(request: web.Request) -> web.Response:
    body = await json_body(request)
    names = _name(request, "assembly"), _name(request, "resource")
    return _json(await _do(request, Catalog.update_resource, *names, body))


async def remove_resource(request: web.Request) -> web.Response:
    names = _name(request, "assembly"), _name(request, "resource")
    await _do(request, Catalog.remove_resource, *names)
    return _no_content()


async def set_assembly_escalation(request: web.Request) -> web.Response:
    body = await json_body(request)
    assembly = _name(request, "assembly")
    return _json(await _do(request, Catalog.set_assembly_escalation, assembly, body))


async def list_templates(request: web.Request) -> web.Response:
    return _json(await _do(request, Catalog.list_templates))


async def create_template(request: web.Request) -> web.Response:
    return _json(await _do(request, Catalog.create_template, await json_body(request)), 201)


async def get_template(request: web.Request) -> web.Response:
    return _json(await _do(request, Catalog.get_template, _name(request)))


async def delete_template(request: web.Request) -> web.Response:
    await _do(request, Catalog.delete_template, _name(request))
    return _no_content()


async def list_deployables(request: web.Request) -> web.Response:
    return _json(await _do(request, Catalog.list_deployables))


async def create_deployable(request: web.Request) -> web.Response:
    return _json(await _do(request, Catalog.create_deployable, await json_body(request)), 201)


async def get_deployable(request: web.Request) -> web.Response:
    return _json(await _do(request, Catalog.get_deployable, _name(request)))


async def put_deployable(request: web.Request) -> web.Response:
    body = await json_body(request)
    document, created = await _do(request, Catalog.put_deployable, _name(request), body)
    return _json(document, 201 if created else 200)


async def delete_deployable(request: web.Request) -> web.Response:
    force = parse_flag(request.query.get("force"), "force")
    await request.app[LIFECYCLE].delete(_name(request), force)
    return _no_content()


async def add_deployable_assembly(request: web.Request) -> web.Response:
    body = await json_body(request)
    return _json(await _do(request, Catalog.add_deployable_assembly, _name(request), body))


async def remove_deployable_assembly(request: web.Request) -> web.Response:
    names = _name(request), _name(request, "assembly")
    return _json(await _do(request, Catalog.remove_deployable_assembly, *names))


async def add_constraint(request: web.Request) -> web.Response:
    body = await json_body(request)
    return _json(await _do(request, Catalog.add_constraint, _name(request), body), 201)


async def remove_constraint(request: web.Request) -> web.Response:
    first, then = request.query["first"], request.query["then"]
    await _do(request, Catalog.remove_constraint, _name(request), first, then)
    return _no_content()


async def add_service(request: web.Request) -> web.Response:
    body = await json_body(request)
    return _json(await _do(request, services.add_service, _name(request), body), 201)


async def update_service(request: web.Request) -> web.Response:
    body = await json_body(request)
    names = _name(request), _name(request, "service")
    return _json(await _do(request, services.update_service, *names, body))


async def remove_service(request: web.Request) -> web.Response:
    await _do(request, services.remove_service, _name(request), _name(request, "service"))
    return _no_content()


async def move_service(request: web.Request) -> web.Response:
    """Record the move, then have a running DPE read it (a stopped one will on start)."""
    body = await json_body(request)
    name = _name(request)
    answer = await _do(request, services.request_move, name, _name(request, "service"), body)
    try:
        await request.app[LIFECYCLE].reload(name)
    except (Conflict, Unavailable):
        return _json(answer | {"note": "the deployable is not running: moved when started"}, 202)
    return _json(answer | {"note": "the DPE is moving it"}, 202)


async def add_colocation(request: web.Request) -> web.Response:
    body = await json_body(request)
    return _json(await _do(request, services.add_colocation, _name(request), body), 201)


async def remove_colocation(request: web.Request) -> web.Response:
    service, with_ = request.query["service"], request.query["with"]
    await _do(request, services.remove_colocation, _name(request), service, with_)
    return _no_content()


async def set_deployable_escalation(request: web.Request) -> web.Response:
    body = await json_body(request)
    return _json(await _do(request, Catalog.set_deployable_escalation, _name(request), body))


async def start_deployable(request: web.Request) -> web.Response:
    return _json(await request.app[LIFECYCLE].start(_name(request)))


async def stop_deployable(request: web.Request) -> web.Response:
    wait = _seconds(request, "wait", MAX_WAIT)
    kill_after = _seconds(request, "kill_after", MAX_KILL_AFTER)
    lifecycle = request.app[LIFECYCLE]
    answer, done = await lifecycle.stop(
        _name(request), STOP_WAIT if wait is None else wait, kill_after
    )
    return _json(answer, 200 if done else 202)


async def reload_deployable(request: web.Request) -> web.Response:
    return _json(await request.app[LIFECYCLE].reload(_name(request)))


async def deployable_status(request: web.Request) -> web.Response:
    return _json(await request.app[LIFECYCLE].status(_name(request)))


async def deployable_cib(request: web.Request) -> web.Response:
    recorded = await _in_store(request.app, read_recorded, request.app[STORE], _name(request))
    return _json(cib_answer(recorded, _wall(request)))


async def simulate_deployable(request: web.Request) -> web.Response:
    """What-if; crm_simulate (policy_engine=pacemaker) runs in a thread of its own."""
    failures = parse_fail_query(request.query.get("fail"))
    configured = request.app[INFO].config.dped.policy_engine
    engine = request.query.get("policy_engine", configured)
    recorded = await _in_store(request.app, read_recorded, request.app[STORE], _name(request))
    now = _wall(request)
    return _json(await asyncio.to_thread(simulate_answer, recorded, failures, engine, now))


def _wall(request: web.Request) -> float:
    return request.app[LIFECYCLE].clock()


def _seconds(request: web.Request, key: str, maximum: float) -> float | None:
    """A duration query parameter (``30``, ``500ms``, ``2m``), or None if absent."""
    text = request.query.get(key)
    if text is None:
        return None
    try:
        seconds = parse_duration(text)
    except ValueError as error:
        message = str(error)
    else:
        if seconds <= maximum:
            return seconds
        message = f"at most {maximum:g} s: {text!r}"
    raise InvalidInput(f"invalid {key}: {message}", details=[{"path": key, "message": message}])


async def query_events(request: web.Request) -> web.Response:
    return _json(await _do(request, Catalog.query_events, request.query))


async def stream_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: every new event matching the filters, as it is stored."""
    query = dict(request.query)
    if "Last-Event-ID" in request.headers:
        query["after_id"] = request.headers["Last-Event-ID"].strip()
    args = parse_event_query(query)
    store, feed = request.app[STORE], request.app[FEED]
    after: int = (
        args["after_id"]
        if "after_id" in args
        else await _in_store(request.app, store.last_event_id)
    )
    filters: dict[str, str] = {k: args[k] for k in EVENT_FILTERS if k in args}
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    with contextlib.suppress(ConnectionError):  # the client went away
        await _stream(request, response, feed, store, after, filters)
    return response


async def _stream(
    request: web.Request,
    response: web.StreamResponse,
    feed: EventFeed,
    store: Store,
    after: int,
    filters: dict[str, str],
) -> None:
    keepalive = request.app[STREAMS].keepalive
    while not feed.closed:
        mark = feed.last
        events = await _in_store(
            request.app, store.query_events, after_id=after, limit=STREAM_BATCH, **filters
        )
        for event in events:
            await response.write(sse_message(event))
            after = event.id or after
        if len(events) == STREAM_BATCH:
            continue
        if not await feed.wait_after(mark, keepalive) and not feed.closed:
            await response.write(b": keepalive\n\n")


def sse_message(event: Event) -> bytes:
    data = json.dumps(event.to_dict(), separators=(",", ":"))
    return f"id: {event.id}\nevent: event\ndata: {data}\n\n".encode()


HANDLERS: dict[str, Handler] = {
    "health": health,
    "openapi": openapi,
    "cluster_status": cluster_status,
    "list_jeos": list_jeos,
    "create_jeos": create_jeos,
    "get_jeos": get_jeos,
    "delete_jeos": delete_jeos,
    "list_assemblies": list_assemblies,
    "create_assembly": create_assembly,
    "get_assembly": get_assembly,
    "put_assembly": put_assembly,
    "delete_assembly": delete_assembly,
    "add_resource": add_resource,
    "update_resource": update_resource,
    "remove_resource": remove_resource,
    "set_assembly_escalation": set_assembly_escalation,
    "list_templates": list_templates,
    "create_template": create_template,
    "get_template": get_template,
    "delete_template": delete_template,
    "list_deployables": list_deployables,
    "create_deployable": create_deployable,
    "get_deployable": get_deployable,
    "put_deployable": put_deployable,
    "delete_deployable": delete_deployable,
    "add_deployable_assembly": add_deployable_assembly,
    "remove_deployable_assembly": remove_deployable_assembly,
    "add_constraint": add_constraint,
    "remove_constraint": remove_constraint,
    "set_deployable_escalation": set_deployable_escalation,
    "add_service": add_service,
    "update_service": update_service,
    "remove_service": remove_service,
    "move_service": move_service,
    "add_colocation": add_colocation,
    "remove_colocation": remove_colocation,
    "start_deployable": start_deployable,
    "stop_deployable": stop_deployable,
    "reload_deployable": reload_deployable,
    "deployable_status": deployable_status,
    "deployable_cib": deployable_cib,
    "simulate_deployable": simulate_deployable,
    "query_events": query_events,
    "stream_events": stream_events,
}
