"""cped's HTTP API: aiohttp in front of the route table.

Every route of ``cpe.route_table.ROUTES`` is registered with one handler made
from its declaration: it reads the path's names, the query and the JSON body,
and ``cpe.dispatch`` does the rest (the request checked by the route's models,
then its target).  Store work runs on one dedicated thread, so SQLite's busy
waits never stall the event loop and calls on the single connection are
serialised.  Every error leaves as JSON ``{code, message, details}``; a body
that is not a JSON object, a wrong content type, an unknown field or query
parameter is a 400 with a clear message, never a 500.  Every change is logged
with who made it: the peer's uid and pid (SO_PEERCRED) on the UNIX socket, the
address on the TLS listener.  With an ``Access`` in ``DaemonInfo`` (cped always
has one) every request is checked first (``cpe.access``): a local peer by its
uid, a TCP one by its bearer token.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from multidict import MultiMapping

from cpe import dispatch
from cpe.access import Peer
from cpe.catalog import Catalog
from cpe.cluster import Cluster
from cpe.context import Context, DaemonInfo, StreamSettings
from cpe.eventfeed import EventFeed
from cpe.hook import EventHook
from cpe.lifecycle import Lifecycle
from cpe.membership import MemberOptions, Membership, StoreClock, in_thread
from cpe.retention import prune_forever
from cpe.route_table import ROUTES
from cpe.routes import EVENT_STREAM, PREFIX, STATUS_OF_CODE, Answer, Route
from cpe.supervisor import Launcher, StoreCall, Supervisor, SupervisorOptions
from cpe.wakeups import listen_for_wakeups, stop_listening, store_wakeups
from foundation.clock import Clock, SystemClock
from foundation.document import (
    check_depth,
    check_unicode,
    kind_of,
    nested_too_deeply,
    number_too_long,
    unique_keys,
)
from foundation.errors import Code, InvalidInput, PcloudError
from foundation.events import Event
from foundation.keyshare import KeyShare
from foundation.problems import refusal
from foundation.store import Store
from foundation.wakeup import EVENT, Wake

log = logging.getLogger("cped.api")

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_BODY = 4 * 1024 * 1024
BODY_TIMEOUT = 60.0  # the longest a request body may take to arrive (4 MiB: 70 KB/s)
HOOK_BATCH = 100
CHANGING_METHODS = ("POST", "PUT", "DELETE", "PATCH")

CONTEXT = web.AppKey("context", Context)
STORE_THREAD = web.AppKey("store_thread", ThreadPoolExecutor)
MEMBER_THREAD = web.AppKey("member_thread", ThreadPoolExecutor)
WAKE_SOCKET = web.AppKey("wake_socket", Path)
# Path prefixes whose handlers check TCP peers themselves (the web console's session);
# empty unless something is mounted (cpe.console).
SELF_CHECKED = web.AppKey("self_checked", tuple[str, ...])

__all__ = ["CONTEXT", "DaemonInfo", "StreamSettings", "error_response", "make_app", "peer_of"]


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
    wake_socket: Path | None = None,
) -> web.Application:
    """The API application; the caller owns (and closes) the store.

    With a ``launcher`` the application supervises DPEs (``cpe.supervisor``)
    for as long as it runs; without one, start, stop and reload answer 503.
    With ``member`` it is one member among those sharing the store
    (``cpe.cluster``): it runs only the deployables placed on it; its
    heartbeats go through ``member_store`` (a connection of their own, on a
    thread of their own), else the API's.
    With a ``wake_socket`` it hears its own DPEs' wake-ups there, and on
    PostgreSQL every member's, from the store (``cpe.wakeups``).
    """
    app = web.Application(middlewares=[_audit, _errors, _access], client_max_size=MAX_BODY)
    app[STORE_THREAD] = ThreadPoolExecutor(1, thread_name_prefix="store")
    app[SELF_CHECKED] = ()
    in_store = partial(_in_store, app)
    streams = streams or StreamSettings()
    cluster = None
    if member is not None:
        cluster = _cluster(app, store, member, key_share, member_store, clock)
        clock = clock or StoreClock(cluster.membership)
    feed = EventFeed(partial(in_store, store.last_event_id), streams.poll_interval)
    supervisor = None
    if launcher is not None:
        supervisor = Supervisor(
            store,
            launcher,
            in_store=in_store,
            options=lambda: SupervisorOptions.from_config(app[CONTEXT].info.config),
            clock=clock,
            host=cluster.membership.name if cluster else None,
            on_event=feed.poke,
            owns=cluster.membership.owns if cluster else None,
            holder_gone=cluster.membership.holder_gone if cluster else None,
        )
        if cluster is not None:
            cluster.membership.on_change = supervisor.wake  # placement may have moved
    catalog = Catalog(store, keys_dir=keys_dir)
    wall = (clock or SystemClock()).time
    lifecycle = Lifecycle(catalog, supervisor, in_store, wall, cluster=cluster)
    app[CONTEXT] = Context(catalog, lifecycle, info, in_store, feed, streams, cluster)
    if wake_socket is not None:
        app[WAKE_SOCKET] = wake_socket
    app.cleanup_ctx.append(_background)
    app.on_shutdown.append(_close_streams)
    for route in ROUTES:
        _add_route(app.router, route)
    return app


def _add_route(router: web.UrlDispatcher, route: Route) -> None:
    """A GET answers HEAD too (the same headers, no body), as HTTP says it should;
    not the event stream, whose answer never ends."""
    path, handler = PREFIX + route.path, _handler(route)
    if route.method == "GET" and route.media != EVENT_STREAM:
        router.add_get(path, handler, allow_head=True)
    else:
        router.add_route(route.method, path, handler)


def _cluster(
    app: web.Application,
    store: Store,
    member: MemberOptions,
    key_share: KeyShare | None,
    member_store: Store | None,
    clock: Clock | None,
) -> Cluster:
    beats: StoreCall = partial(_in_store, app)
    if member_store is not None:
        app[MEMBER_THREAD] = ThreadPoolExecutor(1, thread_name_prefix="member")
        beats = in_thread(app[MEMBER_THREAD])
    membership = Membership(member_store or store, beats, member, clock=clock)
    return Cluster(store, membership, partial(_in_store, app), key_share)


async def _background(app: web.Application) -> AsyncIterator[None]:
    """The event feed and the event hook run for the application's lifetime."""
    context = app[CONTEXT]
    cluster = context.cluster
    if cluster is not None:
        await cluster.membership.join()  # a member name in use: cped does not start
    feed = _feed(context)
    hook = EventHook(
        feed,
        partial(context.in_store, _events_after, context.store),
        lambda: context.info.config.cped,
    )
    context.info.on_reload.append(hook.reconfigured)
    newest = await context.in_store(context.store.last_event_id)
    wakeups = await _listen_for_wakeups(app)
    tasks = [
        asyncio.create_task(feed.run(), name="event-feed"),
        asyncio.create_task(hook.run(newest), name="event-hook"),
        asyncio.create_task(_prune_events(context), name="event-retention"),
    ]
    from_store = store_wakeups(context.store, partial(_on_wake, context), partial(_look, context))
    if from_store is not None:
        tasks.append(asyncio.create_task(from_store.run(), name="store-wakeups"))
    supervisor = context.lifecycle.supervisor
    if supervisor is not None:
        tasks.append(asyncio.create_task(supervisor.run(), name="dpe-supervisor"))
    if cluster is not None:
        tasks += cluster_tasks(cluster, supervisor)
    yield
    if cluster is not None:
        await cluster.leave(supervisor, context.info.config.cped.shutdown_timeout)
    if wakeups is not None:
        stop_listening(wakeups, app[WAKE_SOCKET])
    await feed.close()
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


async def _listen_for_wakeups(app: web.Application) -> asyncio.DatagramTransport | None:
    if WAKE_SOCKET not in app:
        return None
    transport, _ = await listen_for_wakeups(app[WAKE_SOCKET], partial(_on_wake, app[CONTEXT]))
    return transport


def _on_wake(context: Context, wake: Wake) -> None:
    """Something was stored (a DPE's datagram, or on PostgreSQL the store's notification,
    whichever member wrote it): the event feed and the supervisor decide whether to look."""
    if wake.kind == EVENT:
        _feed(context).poke()
    supervisor = context.lifecycle.supervisor
    if supervisor is not None:
        supervisor.notice(wake)


def _look(context: Context) -> None:
    """Wake-ups may have been lost (the store's listening connection was): look anyway."""
    _feed(context).poke()
    supervisor = context.lifecycle.supervisor
    if supervisor is not None:
        supervisor.wake()


def _feed(context: Context) -> EventFeed:
    assert context.feed is not None  # make_app always gives cped's context one
    return context.feed


async def _prune_events(context: Context) -> None:
    await prune_forever(
        partial(context.in_store, context.store.prune_events),
        lambda: context.info.config.cped.event_retention,
        context.lifecycle.clock,
    )


def _events_after(store: Store, after_id: int) -> list[Event]:
    return store.query_events(after_id=after_id, limit=HOOK_BATCH)


async def _close_streams(app: web.Application) -> None:
    await _feed(app[CONTEXT]).close()  # ends every event stream: shutdown does not wait


async def _in_store(app: web.Application, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(app[STORE_THREAD], partial(fn, *args, **kwargs))


# ---------------------------------------------------------------------------
# one handler per route, made from its declaration


def _handler(route: Route) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        context = request.app[CONTEXT]
        names = [request.match_info[name] for name in route.path_params]
        query = single_values(request.query)
        body = None
        if route.request and _may_be_left_out(route, request):
            body = {}
        elif route.request:
            body = await json_body(request)
        else:
            await refuse_a_body(request)
        if route.media == EVENT_STREAM:
            args, kwargs = dispatch.arguments(route, names, query, body)
            stream = dispatch.target_of(route).function
            response: web.StreamResponse = await stream(context, request, *args, **kwargs)
            return response
        return _response(await dispatch.answer(context, route, names, query, body))

    handle.__name__ = route.operation_id
    return handle


def _response(answer: Answer) -> web.Response:
    if answer.status == 204:
        return web.Response(status=204)
    return web.json_response(answer.body, status=answer.status)


def single_values(query: MultiMapping[str]) -> dict[str, str]:
    """The query, each parameter once: ``?limit=1&limit=500`` would otherwise mean
    whichever one was read first, silently."""
    repeated = sorted({key for key in query if len(query.getall(key)) > 1})
    if repeated:
        raise refusal(
            "invalid query", [{"path": key, "message": "given more than once"} for key in repeated]
        )
    return dict(query)


async def refuse_a_body(request: web.Request) -> None:
    """Refuse a body on a route that takes none: ``{"wait": 60}`` sent to a stop would
    otherwise be dropped without a word (its settings are query parameters)."""
    if request.body_exists and await request.content.read(1):
        raise InvalidInput(
            f"{request.method} {request.path} takes no request body"
            " (its settings, if any, are query parameters)"
        )


def _may_be_left_out(route: Route, request: web.Request) -> bool:
    """No body at all, to an action whose request requires no field: the same as
    ``{}`` (a clean-up of everything, say: ``curl -X POST .../cleanup``).  Never
    for a PUT: its body is the whole of what it replaces."""
    if request.body_exists or route.method != "POST" or route.request is None:
        return False
    return not dispatch.body_required(route.request)


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object, or InvalidInput saying exactly what is wrong."""
    _check_body_headers(request)
    data = _parse_json(await _read_body(request))
    if not isinstance(data, dict):
        raise InvalidInput(f"the JSON body must be an object, not {kind_of(data)}")
    check_depth(data)  # parsed, it would still be too deep for what walks it next
    check_unicode(data)
    return data


BODY_ENCODINGS = ("identity", "gzip", "deflate")  # what the server decodes itself


def _check_body_headers(request: web.Request) -> None:
    if request.content_type != "application/json":
        raise InvalidInput(
            f"the request body must be JSON (Content-Type: application/json),"
            f" not {request.content_type!r}"
        )
    if (request.charset or "utf-8").lower() not in ("utf-8", "utf8"):  # JSON is UTF-8 (RFC 8259)
        raise InvalidInput(f"the request body must be UTF-8 JSON, not charset={request.charset}")
    encoding = _body_encoding(request)
    if encoding not in BODY_ENCODINGS:
        raise InvalidInput(
            f"the request body's Content-Encoding {encoding!r} is not one cped reads"
            f" ({', '.join(BODY_ENCODINGS)})"
        )


def _body_encoding(request: web.Request) -> str:
    return request.headers.get("Content-Encoding", "identity").strip().lower()


async def _read_body(request: web.Request) -> bytes:
    try:
        async with asyncio.timeout(BODY_TIMEOUT):
            return await request.read()
    except ConnectionResetError:  # the client hung up before sending all it announced
        raise InvalidInput("the request body was cut short: the connection closed") from None
    except web.RequestPayloadError:  # it does not decode as its Content-Encoding says
        raise InvalidInput(
            f"the request body is not valid {_body_encoding(request)} data"
        ) from None
    except TimeoutError:  # a client that stalls must not hold a request open for ever
        raise InvalidInput(f"the request body did not arrive within {BODY_TIMEOUT:g} s") from None


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(
            raw.decode("utf-8"), parse_constant=_no_constants, object_pairs_hook=unique_keys
        )
    except UnicodeDecodeError:
        raise InvalidInput("the request body is not UTF-8 text") from None
    except ValueError as error:
        raise InvalidInput(f"malformed JSON body: {number_too_long(error) or error}") from None
    except RecursionError:
        raise InvalidInput(f"malformed JSON body: {nested_too_deeply()}") from None


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


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
    headers = {}
    if error.status == 404:
        code, message = Code.NOT_FOUND, f"no such route: {request.method} {request.path}"
    elif error.status == 405:
        headers["Allow"] = error.headers.get("Allow", "")  # a 405 must say them (RFC 9110)
        allowed = ", ".join(headers["Allow"].split(","))
        message = f"method {request.method} is not allowed on {request.path} (allowed: {allowed})"
    elif error.status == 413:
        message = f"the request body is too large (limit {MAX_BODY} bytes)"
    body = {"code": str(code), "message": message, "details": None}
    return web.json_response(body, status=error.status, headers=headers)


@web.middleware
async def _access(request: web.Request, handler: Handler) -> web.StreamResponse:
    access = request.app[CONTEXT].info.access
    if access is None:
        return await handler(request)
    peer = peer_of(request)
    if peer.address is not None and request.path.startswith(request.app[SELF_CHECKED]):
        return await handler(request)  # its own check (a session), not the bearer token
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
    peer = peer_of(request)  # now: a client that hangs up takes its credentials along
    response = await handler(request)
    log.info(
        "change by %s: %s %s -> %d",
        peer.describe(),
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
