"""cped's API routes: what a declaration says, and how a call becomes a request.

Each route is declared once: its method, path, what answers it and the models
of its query, body and answer.

Everything else comes from the table (``cpe.route_table.ROUTES``): cped's handlers (``cpe.api`` through
``cpe.dispatch``), the OpenAPI document served at ``/v1/openapi.json``
(``cpe.openapi``) and the client's methods (``cpe.client``: one per route, named
by its ``operation_id``).  Adding a route is a line here and the function that
answers it.

A route's ``target`` is ``module:function``, the function that answers it
(see ``cpe.dispatch`` for how it is called).  Models are named, not imported:
this module is the client's too, and a one-shot command must not pay for
pydantic (``cpe.bodies`` and ``cpe.answers`` define them; a test checks every
name).  The way a call's arguments become a request is here as well, so the
client and the in-process binding of the tests shape calls alike:
``client.add_constraint("shop", {"first": "db/pg", "then": "web/www"})``,
``client.remove_constraint("shop", first="db/pg", then="web/www")``: the path's
names in order, then the body if the route has one, then the query by keyword.

Standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode

from foundation.errors import Code

PREFIX = "/v1"
JSON = "application/json"
EVENT_STREAM = "text/event-stream"

# HTTP status of each error code (one place; the client maps back by code).
STATUS_OF_CODE: dict[Code, int] = {
    Code.INVALID: 400,
    Code.UNAUTHORIZED: 401,
    Code.FORBIDDEN: 403,
    Code.NOT_FOUND: 404,
    Code.CONFLICT: 409,
    Code.AGENT: 502,
    Code.UNAVAILABLE: 503,
    Code.TIMEOUT: 504,
    Code.STORE: 500,
    Code.INTERNAL: 500,
}

# How long a route may wait before it answers, by default: a stop waits for the DPE
# (``wait``), a forced delete for the stop before it.  Clients outlast these.
STOP_WAIT = 20.0
FORCE_WAIT = 20.0

# Every route may answer these: an unknown query parameter or an invalid name (400),
# the access check (401, 403, see cpe.access), an internal error (500).
EVERY_ROUTE_ERRORS = (400, 401, 403, 500)


class Answer(NamedTuple):
    """A target's answer with a status other than its route's (201 when an import
    created the deployable, 202 while a stop goes on)."""

    body: Any
    status: int


class Route(NamedTuple):
    """One route (a named tuple, not a dataclass: a one-shot command makes the
    table at start, and named tuples are the cheapest classes to make)."""

    method: str
    path: str  # under PREFIX; its {name} parts are the path parameters, in order
    operation_id: str
    summary: str
    target: str  # module:function
    response: str | None = None  # a model's name; "[Name]" for a list of them
    status: int = 200
    request: str | None = None  # the JSON body's model
    query: str | None = None  # the query parameters' model
    errors: tuple[int, ...] = (400, 404, 409)
    media: str = JSON
    also: tuple[int, ...] = ()  # other success statuses, with the same body
    waits: float = 0.0  # how long cped may take to answer by default (a query's wait: as long)

    @property
    def path_params(self) -> tuple[str, ...]:
        return tuple(part[1:-1] for part in self.path.split("/") if part.startswith("{"))

    @property
    def answers_a_list(self) -> bool:
        return self.response is not None and self.response.startswith("[")

    def shape(self, args: tuple[Any, ...], query: Mapping[str, Any]) -> Call:
        """The request a client call makes: path names, the body, the query."""
        wanted = len(self.path_params) + (1 if self.request else 0)
        if len(args) != wanted:
            and_body = " and a body" if self.request else ""
            raise TypeError(
                f"{self.operation_id}() takes {', '.join(self.path_params) or 'no names'}"
                f"{and_body} ({wanted} arguments), not {len(args)}"
            )
        names = tuple(str(a) for a in args[: len(self.path_params)])
        body = args[-1] if self.request else None
        present = {_query_name(k): _query_text(v) for k, v in query.items() if v is not None}
        return Call(self, names, body, present)


class Call(NamedTuple):
    route: Route
    names: tuple[str, ...]  # the path parameters' values, in order
    body: Any
    query: dict[str, str]

    @property
    def url(self) -> str:
        """The path under PREFIX with its names quoted, and the query."""
        values = iter(self.names)
        parts = [
            quote(next(values), safe="") if part.startswith("{") else part
            for part in self.route.path.split("/")
        ]
        url = PREFIX + "/".join(parts)
        return url + "?" + urlencode(self.query) if self.query else url


def _query_name(keyword: str) -> str:
    """``with_`` -> ``with``: a Python keyword is given with a trailing underscore."""
    return keyword.removesuffix("_")


def _query_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return str(value)
