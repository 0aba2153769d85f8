"""Resource operations as the guest agent runs them.

Builds the ``OP`` and ``WATCH`` objects of the agent's protocol (see
``dpe/guest_agent/pcloud_agent.py``) from the document's resources, and reads
its outcomes back as ``dpe.agents.AgentResult``.  The semantics stay those of
``dpe.agents``: the same OCF variables (``agents.ocf_environment``), the same
program paths and actions (the agent builds them as ``agents.command`` does;
the tests hold the two side by side), the same return-code mapping
(``agents.map_rc`` on the exit status the agent reports as a shell would).

What is watched: ``anything``'s ``pidfile`` (its default lives under the
guest's ``$HA_VARRUN``), an LSB service's ``/run/<type>.pid`` when the script
writes one, a systemd unit's main process.  Other agents are monitored by
their recurring monitor alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dpe import agents
from dpe.interfaces import CommandResult
from foundation.errors import InvalidInput, OperationTimeout
from foundation.model import Resource

_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class AgentOutcome:
    """An ``OUTCOME`` of the protocol: ``exit_status`` is None when it timed out."""

    exit_status: int | None
    timed_out: bool
    stdout: str = ""
    stderr: str = ""
    duration: float = 0.0

    @classmethod
    def from_message(cls, message: Mapping[str, Any]) -> AgentOutcome:
        """Read from an agent's ``result`` or ``change``; raises ``ValueError`` if malformed."""
        status = message.get("exit_status")
        timed_out = message.get("timed_out")
        if not isinstance(timed_out, bool) or not (
            status is None or (isinstance(status, int) and not isinstance(status, bool))
        ):
            raise ValueError(f"not an outcome: {dict(message)!r:.200}")
        return cls(
            status,
            timed_out or status is None,
            _text(message.get("stdout")),
            _text(message.get("stderr")),
            _number(message.get("duration")),
        )


def op_message(
    resource: Resource,
    op: str,
    *,
    interval: float = 0.0,
    params: Mapping[str, str] | None = None,
    environment: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The ``OP`` object running ``op`` of ``resource`` (as ``agents.command`` would).

    ``interval`` is the monitor interval (0 for a probe or a one-shot op),
    ``params`` the resolved parameter values (default: the resource's own).
    Raises ``InvalidInput`` for an unknown operation or a bad variable name."""
    if op not in agents.OPERATIONS:
        raise InvalidInput(f"unknown operation {op!r} (one of {', '.join(agents.OPERATIONS)})")
    timeout = resource.timeout(op)
    env = _checked_environment(environment or {})
    if resource.rclass == "ocf":
        values = agents.resolve_params(resource) if params is None else params
        env |= agents.ocf_environment(resource, values, interval, timeout)
    message: dict[str, Any] = {
        "resource": resource.name,
        "class": resource.rclass,
        "type": resource.type,
        "action": op,
        "env": env,
        "timeout": timeout,
    }
    if resource.rclass == "ocf":
        message["provider"] = resource.provider
    return message


def watch_message(
    resource: Resource, params: Mapping[str, str] | None = None
) -> dict[str, str] | None:
    """The ``WATCH`` object for ``resource``, or None when it has no process to watch."""
    if resource.rclass == "systemd":
        return {"kind": "systemd"}
    if resource.rclass == "lsb":
        return {"kind": "pidfile", "path": f"/run/{resource.type}.pid"}
    if (resource.provider, resource.type) == ("heartbeat", "anything"):
        values = agents.resolve_params(resource) if params is None else params
        # relative: under the guest's $HA_VARRUN, where the agent's default is
        return {"kind": "pidfile", "path": values.get("pidfile") or f"anything_{resource.name}.pid"}
    return None


def monitor_key(resource: str, interval: float) -> str:
    """The recurring key of a resource's monitor: ``www:monitor:10000`` (ms)."""
    return f"{resource}:monitor:{round(interval * 1000)}"


def agent_result(resource: Resource, op: str, outcome: AgentOutcome) -> agents.AgentResult:
    """The outcome as ``agents.execute`` would have returned it; a timeout raises
    ``OperationTimeout`` as it does."""
    if outcome.timed_out or outcome.exit_status is None:
        raise OperationTimeout(agents.timeout_reason(op, resource.timeout(op)))
    result = CommandResult(outcome.exit_status, outcome.stdout, outcome.stderr)
    return agents.AgentResult(op, agents.map_rc(resource.rclass, op, outcome.exit_status), result)


def _checked_environment(environment: Mapping[str, str]) -> dict[str, str]:
    for name in environment:
        if not _ENV_NAME_RE.match(name):
            raise InvalidInput(f"not a valid environment variable name: {name!r}")
    return dict(environment)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
