"""``--wait``: a lifecycle command returns once the deployable is where it was asked to be.

cped answers a start as soon as the DPE is spawned, and a stop after a bounded
wait; the shell then polls the deployable's status until its state is the
wanted one, it failed, or the timeout passed.  A reload is answered once the
DPE is told; it is applied when the DPE says so (a ``reloaded`` event, or
nothing is pending any more), and done once every part runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pcloudsh.api import OperationFailed
from pcloudsh.environment import Environment
from pcloudsh.timetext import seconds_text

POLL_INTERVAL = 0.5
DEFAULT_TIMEOUT = 300.0
STOP_WAIT = 20.0  # how long cped waits for a stop before it answers (cpe.routes)
SETTLED = {"started": "running", "stopped": "stopped"}


def wait_for(
    env: Environment,
    name: str,
    desired: str,
    timeout: float,
    *,
    asked_after: int | None = None,
    started: float | None = None,
) -> dict[str, Any]:
    """The status once the deployable is ``SETTLED[desired]``; OperationFailed if it
    failed, was asked otherwise meanwhile, or is not there within ``timeout`` seconds.
    ``asked_after``: the newest event id before the request; a "failed" state counts
    only once an event after it says so (a start clears an earlier failure, but the
    status may still show it until the new DPE has cleared it).  ``started``: when
    the wait began, if before this call (the timeout then says all of it)."""
    wanted = SETTLED[desired]
    api = env.api()
    deadline = env.monotonic() + timeout
    while True:
        status: dict[str, Any] = api.deployable_status(name)
        if _settled(status, wanted):
            return status
        if asked_after is None or _failed_since(api, name, asked_after):
            _check_not_failed(name, status, desired)
        else:
            _check_still_wanted(name, status, desired)
        left = deadline - env.monotonic()
        if left <= 0:
            waited = timeout if started is None else round(env.monotonic() - started, 1)
            raise OperationFailed(
                f"deployable {name} is still {status.get('state')} after {seconds_text(waited)}"
                f" (waiting until it is {wanted}){_last_event(status)}",
                deployable=name,
            )
        env.sleep(min(POLL_INTERVAL, left))


def _settled(status: dict[str, Any], wanted: str) -> bool:
    if status.get("state") != wanted:
        return False
    return wanted != "stopped" or not status.get("dpe", {}).get("alive")


def _failed_since(api: Any, name: str, after_id: int) -> bool:
    """Whether an event of the deployable itself after ``after_id`` says it failed."""
    return any(_deployable_failed(event) for event in _events_after(api, name, after_id))


def _events_after(api: Any, name: str, after_id: int) -> Iterator[dict[str, Any]]:
    """The deployable's events after ``after_id``, oldest first, a page at a time."""
    while page := api.query_events(deployable=name, after_id=after_id, limit=1000):
        after_id = int(page[-1]["id"])
        yield from page


def _deployable_failed(event: dict[str, Any]) -> bool:
    return event.get("assembly") is None and event.get("state") == "failed"


def _check_not_failed(name: str, status: dict[str, Any], desired: str) -> None:
    state = status.get("state")
    if state == "failed":
        reason = status.get("reason") or "escalation exhausted"
        raise OperationFailed(f"deployable {name} failed: {reason}", deployable=name)
    _check_still_wanted(name, status, desired)


def _check_still_wanted(name: str, status: dict[str, Any], desired: str) -> None:
    if status.get("desired") != desired:
        raise OperationFailed(
            f"deployable {name} is now wanted {status.get('desired')} (another request"
            f" came in): no longer waiting until it is {SETTLED[desired]}",
            deployable=name,
        )


def _last_event(status: dict[str, Any]) -> str:
    events = status.get("last_events") or []
    if not events:
        return ""
    last = events[-1]
    return f"; last event: {last.get('state', '')}: {last.get('reason', '')}"


RELOADED, REFUSED = "reloaded:", "reload refused"


def wait_for_reload(env: Environment, name: str, after_id: int, timeout: float) -> dict[str, Any]:
    """The status once the DPE applied the stored document (events after
    ``after_id`` say so) and every part runs; OperationFailed if the DPE refused
    it, the deployable failed, or not within ``timeout`` seconds."""
    api = env.api()
    deadline = env.monotonic() + timeout
    applied = False
    while True:
        status: dict[str, Any] = api.deployable_status(name)
        if not applied:
            applied, after_id = _reload_applied(api, name, after_id)
            applied = applied or not status.get("pending_reload")
        if applied and _settled_after_reload(status):
            return status
        _check_not_failed(name, status, "started")
        left = deadline - env.monotonic()
        if left <= 0:
            what = "not every part runs" if applied else "its DPE has not applied the document"
            raise OperationFailed(
                f"deployable {name}: {what} after {seconds_text(timeout)}{_last_event(status)}",
                deployable=name,
            )
        env.sleep(min(POLL_INTERVAL, left))


def _reload_applied(api: Any, name: str, after_id: int) -> tuple[bool, int]:
    """Whether the deployable's events after ``after_id`` say the document was
    applied, and the newest event read; OperationFailed if they say it was refused."""
    for event in _events_after(api, name, after_id):
        after_id = int(event["id"])
        reason = str(event.get("reason") or "")
        if event.get("assembly") is None and reason.startswith(REFUSED):
            raise OperationFailed(f"deployable {name}: {reason}", deployable=name)
        if event.get("assembly") is None and reason.startswith(RELOADED):
            return True, after_id
    return False, after_id


def _settled_after_reload(status: dict[str, Any]) -> bool:
    """Every part runs, or what does not is a resource its DPE cannot start (it
    backs off, or waits for one that cannot start): the wait ends there, as a
    start's does, and the command names them (``running_result``)."""
    from pcloudsh.status import named_items

    assemblies = named_items(status.get("assemblies"))
    return (
        status.get("state") == "running"
        and all(a.get("state") == "running" for a in assemblies)
        and all(
            resource.get("state") == "running" or resource.get("blocked")
            for assembly in assemblies
            for resource in named_items(assembly.get("resources"))
        )
    )
