"""A deployable's status as a tree: deployable -> assemblies -> resources, then its last events.

The status document is cped's ``GET /v1/deployables/{name}/status``; fields a
cped does not send (yet) are left out of the labels, never guessed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pcloudsh.eventline import event_line
from pcloudsh.output import Group, Node, Styled, Text, View
from pcloudsh.palette import state_style
from pcloudsh.timetext import duration

LAST_EVENTS = 5  # shown under the tree (--json has them all)


def status_view(name: str, status: dict[str, Any], now: float) -> View:
    tree = status_tree(name, status, now)
    parts: list[View] = [tree, *_pending(status.get("name") or name, status)]
    events = named_items(status.get("last_events"))[-LAST_EVENTS:]
    if events:
        parts += [Text("\nlast events:"), *(event_line(e) for e in events)]
    return parts[0] if len(parts) == 1 else Group(parts)


def _pending(name: str, status: dict[str, Any]) -> list[View]:
    """Changes stored but not applied by the running DPE yet."""
    pending = status.get("pending_reload")
    if not pending:
        return []
    return [
        Text(
            f"changes pending reload: {pending}\n  (deployable_diff {name} shows them,"
            f" deployable_reload {name} applies them)"
        )
    ]


def status_tree(name: str, status: dict[str, Any], now: float) -> Node:
    mode = status.get("monitoring")
    details = [
        _desired(status),
        _dpe(status),
        _deployable_monitoring(status),
        _failures(status, shown_when_none=False),
        _reason(status) or _detail("reason", short_of_running(status)),
    ]
    label = _label(f"deployable {status.get('name') or name}", status.get("state"), details)
    assemblies = named_items(status.get("assemblies"))
    return Node(label, [_assembly(a, now, mode) for a in assemblies])


def _assembly(assembly: dict[str, Any], now: float, deployable_mode: Any = None) -> Node:
    instance = assembly.get("instance")
    merged = {**instance, **assembly} if isinstance(instance, dict) else assembly
    details = [
        _instance_id(instance),
        _detail("address", merged.get("address")),
        _uptime(merged, now),
        _monitoring(assembly.get("monitoring"), deployable_mode),
        _failures(assembly, shown_when_none=False),
        _reason(assembly),
    ]
    label = _label(f"assembly {assembly.get('name')}", assembly.get("state"), details)
    return Node(label, [_resource(r, now) for r in named_items(assembly.get("resources"))])


def _resource(resource: dict[str, Any], now: float) -> Node:
    failed = _failed_op(resource)
    details = [
        _blocked(resource, now),
        failed,
        _failures(resource),
        _last_rc(resource.get("last_rc"), resource.get("last_op") if failed else None),
        _reason(resource),
    ]
    noun = "service" if resource.get("service") else "resource"  # a service's copy here
    return Node(_label(f"{noun} {resource.get('name')}", resource.get("state"), details))


def _label(subject: str, state: Any, details: Iterable[str | None]) -> Styled:
    word = str(state) if state not in (None, "") else "unknown"
    shown = [d for d in details if d]
    parts = [(f"{subject}: ", ""), (word, state_style(word))]
    # one part per detail: a narrow terminal breaks the line between them, not inside one
    for index, detail in enumerate(shown):
        opening = " (" if index == 0 else " "
        closing = ")" if index == len(shown) - 1 else ","
        parts.append((f"{opening}{detail}{closing}", ""))
    return Styled(parts)


# the states that agree with a desired state: "desired started" is news only when failed
_AGREE = {
    "started": {"started", "running", "starting", "recovering"},
    "stopped": {"stopped", "stopping"},
}


def _desired(status: dict[str, Any]) -> str | None:
    desired, state = status.get("desired"), status.get("state")
    if desired in (None, "") or state in _AGREE.get(str(desired), {desired}):
        return None
    return f"desired {desired}"


def _dpe(status: dict[str, Any]) -> str | None:
    if "dpe" not in status:
        return None
    dpe = status["dpe"]
    if not isinstance(dpe, dict) or dpe.get("pid") is None:
        return "no DPE" + _backing_off(dpe)
    text = f"DPE pid {dpe['pid']}"
    if dpe.get("member"):
        text += f" on member {dpe['member']}"
    if dpe.get("alive") is False:
        text += " not running"
    if dpe.get("lease_epoch") is not None:
        text += f", lease epoch {dpe['lease_epoch']}"
    return text


def _backing_off(dpe: Any) -> str:
    """Between two DPEs of a deployable wanted started, the last having failed: not the
    "no DPE" of a stopped one (the events say why it failed)."""
    if not isinstance(dpe, dict) or dpe.get("supervision") != "backoff":
        return ""
    restarts, restart_in = dpe.get("restarts"), dpe.get("restart_in")
    text = ": the last one failed"
    if isinstance(restarts, int) and restarts > 1:
        text = f": {restarts} failed in a row"
    if isinstance(restart_in, int | float):
        text += f", the next starts in {duration(restart_in)}"
    return text


def _monitoring(monitoring: Any, deployable_mode: Any) -> str | None:
    """How the instance is monitored, and why: news unless it is simply as asked."""
    if not isinstance(monitoring, dict) or not monitoring.get("mode"):
        return None
    mode, reason = monitoring["mode"], monitoring.get("reason")
    if mode == "passive" and mode == deployable_mode:
        return None  # passive by the deployable's own setting
    return f"{mode}: {reason}" if reason else str(mode)


def _instance_id(instance: Any) -> str | None:
    if isinstance(instance, dict):
        instance = instance.get("instance_id") or instance.get("id")
    return f"instance {instance}" if instance else None


def _uptime(data: dict[str, Any], now: float) -> str | None:
    uptime = data.get("uptime")
    if not isinstance(uptime, int | float):
        created = data.get("created_at")
        if not isinstance(created, int | float) or not created:
            return None
        uptime = now - created
    return f"up {duration(uptime)}"


def _failures(data: dict[str, Any], shown_when_none: bool = True) -> str | None:
    """The failures in the escalation window (cped sends their times, or a count).
    Where escalation is off there is no window and nothing to count towards: "0
    failures" would read as a count kept, so it says "escalation off"."""
    failures = data.get("failures")
    count = len(failures) if isinstance(failures, list) else failures
    if not isinstance(count, int) or isinstance(count, bool):
        return None
    off = escalation_off(data.get("escalation"))
    if count == 0:
        if not shown_when_none:
            return None
        return "escalation off" if off else "0 failures"
    counted = f"{count} failure{'' if count == 1 else 's'}"
    return f"{counted}, escalation off" if off else counted


def escalation_off(escalation: Any) -> bool:
    """True when cped sent the setting and it is off (0 failures or 0 period, or half
    set); False when it is on or not sent (an older cped)."""
    if not isinstance(escalation, dict):
        return False
    values = [escalation.get("failures"), escalation.get("period")]
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return len(numbers) == 2 and not all(v > 0 for v in numbers)


def _deployable_monitoring(status: dict[str, Any]) -> str | None:
    """The deployable's monitoring mode: what its DPE does while one runs; without one
    nothing monitors it, and the mode is only what it is set to."""
    mode = status.get("monitoring")
    if mode in (None, ""):
        return None
    dpe = status.get("dpe")
    if isinstance(dpe, dict) and dpe.get("alive") is False:
        return f"monitoring {mode} once started"
    return f"monitoring {mode}"


def _blocked(resource: dict[str, Any], now: float) -> str | None:
    """Why its DPE cannot start it now, and when it tries again (backing off)."""
    blocked = resource.get("blocked")
    if not blocked:
        return None
    text = f"cannot start: {blocked}"
    retry_at = resource.get("retry_at")
    if isinstance(retry_at, int | float) and not isinstance(retry_at, bool) and retry_at > now:
        text += f", next try in {duration(retry_at - now)}"
    return text


def _failed_op(resource: dict[str, Any]) -> str | None:
    """Its last failed operation, while it does not run: a resource stopped after a
    failed start would otherwise show only the stop's rc."""
    failure = resource.get("last_failure")
    if resource.get("state") == "running" or not isinstance(failure, dict):
        return None
    reason = failure.get("reason")
    return f"last failure: {reason}" if reason else None


def _last_rc(rc: Any, op: Any = None) -> str | None:
    """The last operation's return code (naming the operation when asked: beside a
    failure of another operation)."""
    if not isinstance(rc, int) or isinstance(rc, bool):
        return None
    from dpe.agents import describe

    last = f"last {op}" if op else "last"
    return f"{last} rc {rc} ({describe(rc)})"


def _reason(data: dict[str, Any]) -> str | None:
    """Why it is in its state -- news unless it simply runs."""
    if data.get("state") == "running":
        return None
    return _detail("reason", data.get("reason"))


def short_of_running(status: dict[str, Any]) -> str | None:
    """A running deployable's reason when some of its resources do not run: "running"
    only says its DPE has nothing left to do, and the reason counts what runs, what
    cannot start and why not ("1 assembly running, 0 resources running, 1 cannot start")."""
    if status.get("state") != "running":
        return None
    resources = [
        resource
        for assembly in named_items(status.get("assemblies"))
        for resource in named_items(assembly.get("resources"))
    ]
    if all(resource.get("state") == "running" for resource in resources):
        return None
    return str(status.get("reason") or "") or None


def resources_not_running(status: dict[str, Any]) -> list[dict[str, Any]]:
    """Each resource of the deployable's assemblies that does not run, with its state."""
    return [
        {"assembly": assembly.get("name"), "resource": resource.get("name"), "state": state}
        for assembly in named_items(status.get("assemblies"))
        for resource in named_items(assembly.get("resources"))
        if (state := resource.get("state")) != "running"
    ]


def _detail(label: str, value: Any) -> str | None:
    return f"{label} {value}" if value not in (None, "", []) else None


def named_items(value: Any) -> list[dict[str, Any]]:
    """A list of objects, or an object keyed by name, as a list of objects with names."""
    if isinstance(value, dict):
        return [{"name": key, **item} for key, item in value.items() if isinstance(item, dict)]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, dict)]
    return []
