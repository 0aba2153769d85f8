"""cped's web console: every deployable's health at a glance, recoveries live,
and the shell's lifecycle actions, for a browser on the TLS listener.

Server-rendered HTML (Jinja2, autoescaped everywhere) with one small script
and one style sheet shipped in this package: no build step, nothing from
elsewhere.  Pages read without the script; with it, they follow the event
stream and refresh themselves.  Access is a login with cped's bearer token,
then a server-side session (``guard`` says what protects it).

cped mounts it (``mount``) only when it listens on TCP; the one-shot shell
and the route table never import it (import-linter contracts).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from cpe.api import CONTEXT, SELF_CHECKED
from cpe.console import views
from cpe.console.guard import PREFIX, SESSIONS, add_security_headers
from cpe.console.sessions import Sessions
from cpe.context import DaemonInfo

log = logging.getLogger("cped.console")

HERE = Path(__file__).parent


def mount(app: web.Application, sessions: Sessions | None = None) -> None:
    """Add the console's routes to cped's application (before it starts)."""
    app[SESSIONS] = sessions or Sessions()
    app[SELF_CHECKED] = (*app[SELF_CHECKED], PREFIX)
    _end_sessions_when_the_token_changes(app[CONTEXT].info, app[SESSIONS])
    environment = aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("cpe.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.filters["clock"] = _clock
    app.on_response_prepare.append(add_security_headers)
    get, post = app.router.add_get, app.router.add_post
    app.router.add_get(PREFIX, _to_overview)
    get(f"{PREFIX}/", views.overview)
    get(f"{PREFIX}/login", views.login_form)
    post(f"{PREFIX}/login", views.login)
    post(f"{PREFIX}/logout", views.logout)
    get(f"{PREFIX}/fragments/overview", views.overview_fragment)
    get(f"{PREFIX}/events", views.events)
    get(f"{PREFIX}/deployables/{{name}}", views.deployable)
    get(f"{PREFIX}/deployables/{{name}}/fragments/{{part}}", views.deployable_fragment)
    get(f"{PREFIX}/deployables/{{name}}/confirm/{{action}}", views.confirm)
    post(f"{PREFIX}/deployables/{{name}}/actions/{{action}}", views.act)
    app.router.add_static(f"{PREFIX}/static", HERE / "static")


def _end_sessions_when_the_token_changes(info: DaemonInfo, sessions: Sessions) -> None:
    """A token is replaced (SIGHUP) most often because it leaked: the sessions opened
    with it must not outlive it, or whoever logged in with it keeps the shell's rights
    for the rest of the session's 8 hours."""
    current = info.access.token if info.access else None

    def reloaded() -> None:
        nonlocal current
        token = info.access.token if info.access else None
        if token != current:
            current = token
            ended = sessions.close_all()
            log.info("the bearer token changed: %d console session(s) ended", ended)

    info.on_reload.append(reloaded)


async def _to_overview(request: web.Request) -> web.StreamResponse:
    return web.Response(status=308, headers={"Location": f"{PREFIX}/"})


def _clock(when: float) -> str:
    """An event's time as the timeline shows it (UTC, as the script's rows)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(when))
