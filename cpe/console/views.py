"""The console's pages: login, overview, a deployable, confirmations, actions
and the live event stream.  Each handler checks access first
(``cpe.console.guard``); a refusal of the API's rules is shown as a page with
the API's message and status."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from cpe.api import CONTEXT, peer_of
from cpe.console import guard
from cpe.console.actions import ACTIONS, action_event, action_named, describe, perform
from cpe.console.chart import recovery_chart
from cpe.console.guard import PREFIX, SESSIONS, Refused
from cpe.console.summary import (
    DAY,
    HOUR,
    LEVELS,
    TimelineFilter,
    level_of,
    overview_row,
    recoveries,
    severity_of,
)
from cpe.context import Context
from cpe.eventstream import stream_events
from cpe.routes import STATUS_OF_CODE
from foundation.errors import InvalidInput, PcloudError
from foundation.events import Event
from foundation.spelling import NAME_RE

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = logging.getLogger("cped.console")
TIMELINE_EVENTS = 200
CHART_EVENTS = 20_000


def guarded(handler: Handler) -> Handler:
    """Refusals and the API's errors become answers (pages, not JSON)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except Refused as refused:
            return refused.response
        except PcloudError as error:
            return error_page(request, error)

    handle.__name__ = handler.__name__
    return handle


def error_page(request: web.Request, error: PcloudError) -> web.Response:
    status = STATUS_OF_CODE.get(error.code, 500)
    session = guard.session_of(request)
    return render(request, "error.html", {"message": error.message, "session": session}, status)


def render(
    request: web.Request, template: str, data: dict[str, Any], status: int = 200
) -> web.Response:
    return aiohttp_jinja2.render_template(template, request, data, status=status)


def api(request: web.Request) -> Context:
    return request.app[CONTEXT]


# -- login ---------------------------------------------------------------------------


@guarded
async def login_form(request: web.Request) -> web.StreamResponse:
    guard.require_listener(request)
    return render(request, "login.html", {"session": None})


@guarded
async def login(request: web.Request) -> web.StreamResponse:
    guard.require_listener(request)
    guard.require_same_origin(request)
    form = await request.post()
    token, user = str(form.get("token", "")), str(form.get("user", "")).strip() or "operator"
    if not _token_valid(request, token):
        page = {"session": None, "problem": "the token is not valid", "user": user}
        return render(request, "login.html", page, 401)
    if not NAME_RE.match(user):
        problem = "user: letters, digits, '_', '.' and '-' only (at most 63 characters)"
        return render(request, "login.html", {"session": None, "problem": problem}, 400)
    sessions = request.app[SESSIONS]
    session = sessions.open(user, peer_of(request).address or "?")
    response = guard.see_other(f"{PREFIX}/")
    guard.set_session_cookie(response, session, sessions.lifetime)
    return response


def _token_valid(request: web.Request, token: str) -> bool:
    access = api(request).info.access
    if access is None or access.token is None:
        return False
    offered = token.strip().encode("utf-8", "surrogateescape")
    return hmac.compare_digest(offered, access.token)


@guarded
async def logout(request: web.Request) -> web.StreamResponse:
    session, _ = await guard.require_action(request)
    request.app[SESSIONS].close(session.id)
    response = guard.see_other(f"{PREFIX}/login")
    response.del_cookie(guard.COOKIE, path=PREFIX)
    return response


# -- the overview ----------------------------------------------------------------------


@guarded
async def overview(request: web.Request) -> web.StreamResponse:
    session = guard.require_session(request)
    rows = await overview_rows(api(request))
    return render(request, "overview.html", {"session": session, "rows": rows})


@guarded
async def overview_fragment(request: web.Request) -> web.StreamResponse:
    guard.require_session(request)
    return render(request, "_overview_table.html", {"rows": await overview_rows(api(request))})


async def overview_rows(context: Context) -> list[dict[str, Any]]:
    now = context.lifecycle.clock()
    names = [doc["name"] for doc, _ in await context.in_store(context.store.list_deployables)]
    rows = []
    for name in names:
        status = await context.lifecycle.status(name)
        recent = await context.in_store(
            context.store.query_events, deployable=name, since=now - HOUR, limit=10_000
        )
        rows.append(overview_row(status, recent, now))
    return rows


# -- a deployable ----------------------------------------------------------------------


@guarded
async def deployable(request: web.Request) -> web.StreamResponse:
    session = guard.require_session(request)
    name = request.match_info["name"]
    data = await deployable_view(api(request), name, TimelineFilter.from_query(request.query))
    return render(request, "deployable.html", {"session": session, **data})


@guarded
async def deployable_fragment(request: web.Request) -> web.StreamResponse:
    """The parts the page's script refreshes when an event arrives."""
    session = guard.require_session(request)
    name, part = request.match_info["name"], request.match_info["part"]
    if part not in ("status", "chart"):
        raise web.HTTPNotFound()
    data = await deployable_view(api(request), name, TimelineFilter())
    return render(request, f"_{part}.html", {"session": session, **data})


async def deployable_view(context: Context, name: str, chosen: TimelineFilter) -> dict[str, Any]:
    status = await context.lifecycle.status(name)
    now = context.lifecycle.clock()
    day = await context.in_store(
        context.store.query_events, deployable=name, since=now - DAY, limit=CHART_EVENTS
    )
    latest = await context.in_store(
        context.store.query_events, deployable=name, limit=TIMELINE_EVENTS, newest_first=True
    )
    timeline = [_timeline_row(e) for e in latest if chosen.keeps(e.to_dict())]
    return {
        "status": status,
        "timeline": timeline,
        "chosen": chosen,
        "levels": LEVELS,
        "chart": recovery_chart(recoveries(day), now),
        "recovery_count": len(recoveries(day)),
        "actions": ACTIONS,
    }


def _timeline_row(event: Event) -> dict[str, Any]:
    return event.to_dict() | {
        "level": level_of(event.to_dict()),
        "severity": severity_of(event.state),
    }


# -- actions ---------------------------------------------------------------------------


@guarded
async def confirm(request: web.Request) -> web.StreamResponse:
    """The question before an action (a page: it works without a script)."""
    session = guard.require_session(request)
    name = request.match_info["name"]
    action = action_named(request.match_info["action"])
    status = await api(request).lifecycle.status(name)
    chosen = {k: request.query.get(k, "") for k in ("service", "assembly")}
    page = {"session": session, "action": action, "name": name, "status": status, **chosen}
    return render(request, "confirm.html", page)


@guarded
async def act(request: web.Request) -> web.StreamResponse:
    session, form = await guard.require_action(request)
    name = request.match_info["name"]
    action = action_named(request.match_info["action"])
    context = api(request)
    try:
        answer = await perform(context, action, name, form)
    except PcloudError as error:
        page = {"session": session, "action": action, "name": name, "problem": error.message}
        page |= {
            "status": None,
            "service": form.get("service", ""),
            "assembly": form.get("assembly", ""),
        }
        return render(request, "confirm.html", page, STATUS_OF_CODE.get(error.code, 500))
    note = describe(answer)
    event = action_event(context.lifecycle.clock(), action, name, session.user, session.peer, note)
    await context.in_store(context.store.append_event, event)
    if context.feed is not None:
        context.feed.poke()  # cped stored it: no DPE's wake-up tells the streams
    # the audit log's line for this POST names the address; this one names the user
    log.info(
        "console action by %s from %s: %s %s: %s",
        session.user,
        session.peer,
        action.name,
        name,
        note,
    )
    return guard.see_other(f"{PREFIX}/deployables/{name}")


# -- live events -------------------------------------------------------------------------


@guarded
async def events(request: web.Request) -> web.StreamResponse:
    """The API's event stream, for the session's browser (EventSource sends no header)."""
    guard.require_listener(request)
    if guard.session_of(request) is None:
        return web.Response(status=401, text="log in first")
    deployable = request.query.get("deployable") or None
    if deployable is not None and not NAME_RE.match(deployable):
        raise InvalidInput(f"deployable: not a name: {deployable!r}")
    return await stream_events(api(request), request, deployable=deployable)
