"""The live event stream, ``GET /events/stream``: server-sent events.

Every event matching the filters is sent as it is stored (``id:`` the event's
id, ``event: event``, ``data:`` the event as JSON); a comment line keeps an
idle connection alive.  The stream starts after ``after_id``, or after the
``Last-Event-ID`` header a reconnecting client sends, or with the next event.
"""

from __future__ import annotations

import contextlib
import json

from aiohttp import web

from cpe.bodies import StreamQuery
from cpe.context import Context
from cpe.eventfeed import EventFeed
from foundation.errors import InvalidInput, Unavailable
from foundation.events import Event
from foundation.problems import refusal
from foundation.schema import validated

STREAM_BATCH = 500


async def stream_events(
    api: Context,
    request: web.Request,
    deployable: str | None = None,
    assembly: str | None = None,
    resource: str | None = None,
    after_id: int | None = None,
) -> web.StreamResponse:
    """Server-sent events: every new event matching the filters, as it is stored."""
    if api.feed is None:
        raise Unavailable("this API has no event feed")
    resume = request.headers.get("Last-Event-ID")
    if resume is not None:
        after_id = _resume_after(resume)
    after = after_id if after_id is not None else await api.in_store(api.store.last_event_id)
    filters = {"deployable": deployable, "assembly": assembly, "resource": resource}
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    with contextlib.suppress(ConnectionError):  # the client went away
        await _stream(api, api.feed, response, after, filters)
    return response


def _resume_after(header: str) -> int | None:
    """The event id of a ``Last-Event-ID`` header, checked as ``after_id`` is; a bad
    one is refused naming the header (the client sent no ``after_id``)."""
    try:
        return validated(StreamQuery, {"after_id": header.strip()}).after_id
    except InvalidInput as error:
        problems = error.details if isinstance(error.details, list) else []
        why = [{**problem, "path": "Last-Event-ID"} for problem in problems]
        raise refusal("invalid header", why) from None


async def _stream(
    api: Context,
    feed: EventFeed,
    response: web.StreamResponse,
    after: int,
    filters: dict[str, str | None],
) -> None:
    keepalive = api.streams.keepalive
    while not feed.closed:
        mark = feed.last
        events = await api.in_store(
            api.store.query_events, after_id=after, limit=STREAM_BATCH, **filters
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
