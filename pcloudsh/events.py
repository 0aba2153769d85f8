"""The event log: every state change of a deployable, assembly or resource, with its reason."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

from foundation.errors import InvalidInput, NotFound
from pcloudsh.definition import Arg, Names, Noun, command
from pcloudsh.eventline import event_line
from pcloudsh.follow import EventFollower, newest_event_id
from pcloudsh.output import Group, Notice, Outcome, Result, Stream, Text
from pcloudsh.values import check_name, parse_duration, parse_since, split_resource

MAX_LIMIT = 1000  # cped's limit per query


class EventCommands(Noun):
    category = "Events"

    @command(
        Arg("--deployable", help="only this deployable's events", complete=Names.DEPLOYABLE),
        Arg("--assembly", help="only this assembly's events", complete=Names.ASSEMBLY),
        Arg(
            "--resource",
            help="only this resource's events: ASSEMBLY/RESOURCE, or a name in any assembly",
        ),
        Arg(
            "--since",
            metavar="TIME",
            help="from TIME: 10m or 2h ago, epoch seconds, ISO 8601, or a time of day (23:08)",
        ),
        Arg(
            "--limit",
            type=int,
            default=100,
            help="the last N past events (default 100; 0 with --follow: only new ones)",
        ),
        Arg("--follow", "-f", action="store_true", help="keep printing new events (Ctrl-C ends)"),
        Arg(
            "--timeout",
            metavar="DURATION",
            help="with --follow: stop following after DURATION (60, 60s, 2m) and exit 0"
            " (for scripts)",
        ),
    )
    def events(self, args: argparse.Namespace) -> Outcome:
        """Show the event log, oldest first; with --follow, then the new events as they come.

        One line per event: its time, what changed and its new state, and why.
        With --follow and --json, one JSON object per line (JSON Lines).
        Following survives a restart of cped: it reconnects and misses nothing.
        """
        filters = self._filters(args)
        limit = _limit(args.limit, args.follow)
        timeout = _timeout(args)
        api = self.env.api()
        newest = self._newest_id() if args.follow else 0
        # the last LIMIT events, printed oldest first
        past = (
            list(reversed(api.query_events(**filters, order="desc", limit=limit))) if limit else []
        )
        if not past:
            self._check_named_exist(filters)
        if not args.follow:
            return Result(past, _lines_view(past))
        after = max([newest, *(e.get("id") or 0 for e in past)])
        source = self.env.connect_events(self.env.paths)
        follower = EventFollower(source, _without(filters, "since"), after_id=after)
        return Stream(
            self._follow(follower, timeout),
            header=[_line(e) for e in past],
            quiet_interrupt=True,
        )

    def _follow(self, follower: EventFollower, timeout: float | None) -> Iterator[Result | Notice]:
        timer = self.env.timer(timeout, follower.stop) if timeout is not None else None
        try:
            for item in follower:
                yield item if isinstance(item, Notice) else _line(item)
        finally:
            if timer is not None:
                timer.cancel()
            follower.stop()

    def _newest_id(self) -> int:
        """The id of the newest event of the whole log: following starts after it."""
        return newest_event_id(self.env.api())

    def _check_named_exist(self, filters: dict[str, Any]) -> None:
        """No events of a name cped does not know: a typo (exit 2), not a quiet log.
        A deleted deployable's events stay in the log, so the check comes only then."""
        api = self.env.api()
        if "deployable" in filters:
            api.get_deployable(filters["deployable"])
        if "assembly" in filters:
            assembly = api.get_assembly(filters["assembly"])
            if "resource" in filters and filters["resource"] not in _resource_names([assembly]):
                resource = f"{filters['assembly']}/{filters['resource']}"
                raise NotFound(f"no such resource: {resource!r}", resource=resource)
        elif "resource" in filters and filters["resource"] not in self._resource_names():
            raise NotFound(
                f"no such resource: {filters['resource']!r}", resource=filters["resource"]
            )

    def _resource_names(self) -> set[str]:
        """Every resource of every assembly, and every deployable's services (asked only
        when no event matched, so the cost of a look at each deployable is rare)."""
        api = self.env.api()
        services = {
            service.get("name")
            for row in api.list_deployables()
            for service in api.get_deployable(row["name"]).get("services", [])
        }
        return _resource_names(api.list_assemblies()) | services

    def _filters(self, args: argparse.Namespace) -> dict[str, Any]:
        filters: dict[str, Any] = {}
        for what in ("deployable", "assembly"):
            value = getattr(args, what)
            if value is not None:
                filters[what] = check_name(value, what)
        if args.resource is not None:
            filters.update(_resource_filter(args.resource, filters.get("assembly")))
        if args.since is not None:
            filters["since"] = parse_since(args.since, self.env.clock())
        return filters


def _resource_filter(value: str, assembly: str | None) -> dict[str, str]:
    """``--resource ASSEMBLY/RESOURCE`` filters on both; a bare RESOURCE (or a
    service) on the name in any assembly, or in ``--assembly``'s."""
    if "/" not in value:
        return {"resource": check_name(value, "resource")}
    named, resource = split_resource(value)
    if assembly is not None and assembly != named:
        raise InvalidInput(f"--resource {value!r} is not in --assembly {assembly!r}")
    return {"assembly": named, "resource": resource}


def _resource_names(assemblies: list[dict[str, Any]]) -> set[str]:
    return {resource.get("name") for row in assemblies for resource in row.get("resources", [])}


def _limit(limit: int, follow: bool) -> int:
    """0 only with --follow (like ``tail -n 0 -f``): nothing past, the new events."""
    if not (0 if follow else 1) <= limit <= MAX_LIMIT:
        zero = "" if follow else " (0 goes with --follow: only the new events)"
        raise InvalidInput(f"invalid --limit {limit}: expected 1 to {MAX_LIMIT}{zero}")
    return limit


def _timeout(args: argparse.Namespace) -> float | None:
    if args.timeout is None:
        return None
    if not args.follow:
        raise InvalidInput("--timeout is for --follow: without it, events prints and exits")
    return parse_duration(args.timeout, "--timeout")


def _lines_view(events: list[dict[str, Any]]) -> Group | Text:
    if not events:
        return Text("no events")
    return Group([event_line(e) for e in events])


def _line(event: dict[str, Any]) -> Result:
    return Result(event, event_line(event))


def _without(filters: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in filters.items() if k != key}
