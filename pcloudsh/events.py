"""The event log: every state change of a deployable, assembly or resource, with its reason."""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from typing import Any

from pcloudsh.definition import Arg, Names, Noun, command
from pcloudsh.output import Outcome, Result, Stream, Table, Text, columns
from pcloudsh.values import check_name, parse_since


class EventCommands(Noun):
    category = "Events"

    @command(
        Arg("--deployable", help="only this deployable's events", complete=Names.DEPLOYABLE),
        Arg("--assembly", help="only this assembly's events", complete=Names.ASSEMBLY),
        Arg("--resource", help="only this resource's events"),
        Arg("--since", metavar="TIME", help="from TIME: 10m or 2h ago, epoch seconds, or ISO 8601"),
        Arg("--limit", type=int, default=100, help="the last N past events (default 100)"),
        Arg("--follow", "-f", action="store_true", help="keep printing new events (Ctrl-C ends)"),
    )
    def events(self, args: argparse.Namespace) -> Outcome:
        """Show the event log, oldest first; with --follow, then the new events as they come."""
        api = self.env.api()
        filters = self._filters(args)
        newest = self._newest_id() if args.follow else 0
        # the last LIMIT events, printed oldest first
        past = list(reversed(api.query_events(**filters, order="desc", limit=args.limit)))
        if not args.follow:
            return Result(past, _table(past))
        after = max([newest, *(e.get("id") or 0 for e in past)])
        live = api.stream_events(**_without(filters, "since"), after_id=after)
        return Stream(_lines(live), header=[_line(e) for e in past])

    def _newest_id(self) -> int:
        """The id of the newest event of the whole log: following starts after it."""
        newest = self.env.api().query_events(order="desc", limit=1)
        return int(newest[0].get("id") or 0) if newest else 0

    def _filters(self, args: argparse.Namespace) -> dict[str, Any]:
        filters: dict[str, Any] = {}
        for what in ("deployable", "assembly", "resource"):
            value = getattr(args, what)
            if value is not None:
                filters[what] = check_name(value, what)
        if args.since is not None:
            filters["since"] = parse_since(args.since, self.env.clock())
        return filters


def _table(events: list[dict[str, Any]]) -> Table:
    rows = [{**e, "time": _time(e.get("time")), "subject": _subject(e)} for e in events]
    return Table(
        columns(("time", "Time"), ("subject", "Subject"), ("state", "State"), ("reason", "Reason")),
        rows,
        empty="no events",
    )


def _lines(events: Iterator[dict[str, Any]]) -> Iterator[Result]:
    return (_line(e) for e in events)


def _line(event: dict[str, Any]) -> Result:
    text = f"{_time(event.get('time'))}  {_subject(event)}  {event.get('state')}  {event.get('reason')}"
    return Result(event, Text(text))


def _subject(event: dict[str, Any]) -> str:
    parts = (event.get("deployable"), event.get("assembly"), event.get("resource"))
    return "/".join(str(p) for p in parts if p)


def _time(value: Any) -> str:
    if not isinstance(value, int | float):
        return str(value)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))


def _without(filters: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in filters.items() if k != key}
