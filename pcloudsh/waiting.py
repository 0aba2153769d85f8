"""``--wait``: a lifecycle command returns once the deployable is where it was asked to be.

cped answers a start as soon as the DPE is spawned, and a stop after a bounded
wait; the shell then polls the deployable's status until its state is the
wanted one, it failed, or the timeout passed.
"""

from __future__ import annotations

from typing import Any

from pcloudsh.api import OperationFailed
from pcloudsh.environment import Environment
from pcloudsh.timetext import seconds_text

POLL_INTERVAL = 0.5
DEFAULT_TIMEOUT = 300.0
STOP_WAIT = 20.0  # how long cped waits for a stop before it answers (cpe.routes)
SETTLED = {"started": "running", "stopped": "stopped"}


def wait_for(env: Environment, name: str, desired: str, timeout: float) -> dict[str, Any]:
    """The status once the deployable is ``SETTLED[desired]``; OperationFailed if it
    failed, was asked otherwise meanwhile, or is not there within ``timeout`` seconds."""
    wanted = SETTLED[desired]
    api = env.api()
    deadline = env.monotonic() + timeout
    while True:
        status: dict[str, Any] = api.deployable_status(name)
        if _settled(status, wanted):
            return status
        _check_not_failed(name, status, desired)
        left = deadline - env.monotonic()
        if left <= 0:
            raise OperationFailed(
                f"deployable {name} is still {status.get('state')} after {seconds_text(timeout)}"
                f" (waiting until it is {wanted}){_last_event(status)}",
                deployable=name,
            )
        env.sleep(min(POLL_INTERVAL, left))


def _settled(status: dict[str, Any], wanted: str) -> bool:
    if status.get("state") != wanted:
        return False
    return wanted != "stopped" or not status.get("dpe", {}).get("alive")


def _check_not_failed(name: str, status: dict[str, Any], desired: str) -> None:
    state = status.get("state")
    if state == "failed":
        reason = status.get("reason") or "escalation exhausted"
        raise OperationFailed(f"deployable {name} failed: {reason}", deployable=name)
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
