"""The console's actions: the API's own routes, called in-process.

An action is answered by the route the shell uses (``cpe.dispatch``), so it
is allowed and refused by the same rules, and its refusal comes with the
same message.  Each accepted action is also an event naming its user, so the
event log says who did what, as the audit log does for the shell.

``cleanup`` is offered only when cped has a route for it (the shell's
``deployable_cleanup``): the console has no rules of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cpe import dispatch
from cpe.context import Context
from cpe.route_table import ROUTES
from cpe.routes import Answer, Route
from foundation.errors import InvalidInput, NotFound
from foundation.events import Event

STOP_WAIT = "15"  # seconds a stop may take before the page answers "still stopping"


@dataclass(frozen=True)
class Action:
    name: str
    title: str
    operation_id: str | None
    question: str  # what the confirmation asks; {name} is the deployable


def _route_named(operation_id: str) -> Route | None:
    return next((r for r in ROUTES if r.operation_id == operation_id), None)


def _cleanup_route() -> Route | None:
    return next(
        (
            r
            for r in ROUTES
            if r.method == "POST" and "cleanup" in r.operation_id and "{name}" in r.path
        ),
        None,
    )


_cleanup = _cleanup_route()
ACTIONS: dict[str, Action] = {
    "start": Action("start", "Start", "start_deployable", "Start {name}?"),
    "stop": Action("stop", "Stop", "stop_deployable", "Stop {name}? Its instances are destroyed."),
    "reload": Action(
        "reload", "Reload", "reload_deployable", "Apply the stored document to {name}?"
    ),
    "cleanup": Action(
        "cleanup",
        "Clean up",
        _cleanup.operation_id if _cleanup else None,
        "Clear the fail counts of {name}?",
    ),
    "move": Action("move", "Move", "move_service", "Move the service of {name}?"),
}


def action_named(name: str) -> Action:
    action = ACTIONS.get(name)
    if action is None:
        raise NotFound(f"no such action: {name!r} (one of {', '.join(ACTIONS)})")
    if action.operation_id is None:
        raise NotFound(f"{action.title}: this cped has no route for it")
    return action


async def perform(
    api: Context, action: Action, deployable: str, form: dict[str, str]
) -> dict[str, Any]:
    """The route's answer; a PcloudError (4xx) when it is refused."""
    assert action.operation_id is not None
    route = _route_named(action.operation_id)
    assert route is not None
    names, body, query = _request(action, route, deployable, form)
    answer: Answer = await dispatch.answer(api, route, names, query, body)
    return answer.body if isinstance(answer.body, dict) else {"answer": answer.body}


def _request(
    action: Action, route: Route, deployable: str, form: dict[str, str]
) -> tuple[list[str], dict[str, Any] | None, dict[str, str]]:
    if action.name == "move":
        service, assembly = form.get("service", ""), form.get("assembly", "")
        if not service or not assembly:
            raise InvalidInput("move: choose a service and the assembly to move it to")
        return [deployable, service], {"assembly": assembly}, {}
    if action.name == "stop":
        return [deployable], None, {"wait": STOP_WAIT}
    extra = {k: v for k, v in form.items() if k in ("assembly", "resource") and v}
    if route.request is not None:
        return [deployable], extra, {}
    return [deployable], None, extra


def action_event(
    now: float, action: Action, deployable: str, user: str, peer: str, note: str
) -> Event:
    return Event(
        time=now,
        deployable=deployable,
        state=f"{action.name}-requested",
        reason=f"by {user} from the web console ({peer}): {note}",
    )


def describe(answer: dict[str, Any]) -> str:
    """A line for the page and the event: the answer's note or state."""
    for key in ("note", "state", "desired"):
        if answer.get(key):
            return str(answer[key])
    return "done"
