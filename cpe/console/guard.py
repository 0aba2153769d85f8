"""What keeps the console safe: who may see it, who may act, and what the
browser is told to refuse.

- The console answers only on the TLS listener: a request on the UNIX socket
  gets 404 (a browser cannot reach that socket, and its peers use the API).
- Every page but the login and the static files needs a live session
  (``cpe.console.sessions``); without one a page redirects to the login
  (303) and the event stream answers 401.
- Every POST (the login included) must come from the console's own origin when
  the browser says where it comes from (``Origin``), and every POST but the
  login must carry the session's CSRF token.
- Every console answer carries a Content-Security-Policy that allows scripts,
  styles and images from cped only (no inline script or style), and forbids
  framing; plus ``nosniff``, a same-origin referrer policy and no caching of
  pages.
"""

from __future__ import annotations

from aiohttp import web

from cpe.api import peer_of
from cpe.console.sessions import Session, Sessions

PREFIX = "/console"
COOKIE = "pcloud_console"
SESSIONS = web.AppKey("console_sessions", Sessions)

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: with no-referrer a browser sends "Origin: null" on a POST
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class Refused(Exception):
    """A console request refused before its handler: the answer to give."""

    def __init__(self, response: web.StreamResponse) -> None:
        super().__init__(response.status)
        self.response = response


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: every console answer, errors and streams included."""
    if not request.path.startswith(PREFIX):
        return
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if not request.path.startswith(PREFIX + "/static/"):
        response.headers.setdefault("Cache-Control", "no-store")


def require_listener(request: web.Request) -> None:
    """The console exists on the TLS listener only."""
    if peer_of(request).address is None:
        raise Refused(web.Response(status=404, text="the console is served on the TLS listener"))


def session_of(request: web.Request) -> Session | None:
    return request.app[SESSIONS].find(request.cookies.get(COOKIE))


def require_session(request: web.Request) -> Session:
    """The request's session; without one, a redirect to the login."""
    require_listener(request)
    session = session_of(request)
    if session is None:
        raise Refused(see_other(f"{PREFIX}/login"))
    return session


def require_same_origin(request: web.Request) -> None:
    """A browser names the page a POST comes from: it must be the console's own."""
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        raise Refused(web.Response(status=403, text="cross-origin request refused"))


async def require_action(request: web.Request) -> tuple[Session, dict[str, str]]:
    """An action's session and form, once its origin and CSRF token are checked."""
    session = require_session(request)
    require_same_origin(request)
    form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    if not session.csrf_matches(form.get("csrf")):
        raise Refused(web.Response(status=403, text="missing or wrong CSRF token: reload the page"))
    return session, form


def see_other(location: str) -> web.Response:
    """After a POST or to the login: the browser GETs ``location``."""
    return web.Response(status=303, headers={"Location": location})


def set_session_cookie(response: web.StreamResponse, session: Session, lifetime: float) -> None:
    response.set_cookie(
        COOKIE,
        session.id,
        max_age=int(lifetime),
        path=PREFIX,
        secure=True,
        httponly=True,
        samesite="Strict",
    )
