"""What-if: the actions the engine would take if some parts failed now.

``simulate(document, observed, failures)`` marks the named parts failed --
``ASSEMBLY`` (its instance is lost) or ``ASSEMBLY/RESOURCE`` (its recurring
monitor found it not running) -- and plans, with the built-in planner or any
planner of the same shape (``dpe.pacemaker.PacemakerPlanner``).
``what_if`` gives the same plan with what led to it: the state it was planned
from and, when failure windows are given, the escalations the engine would
make first (a resource that keeps failing fails its assembly; an assembly
that keeps failing restarts the deployable, whose plan is then to stop
everything before starting again; a deployable that keeps failing is given up).

``what_if`` also says where each service would go and why (``placements``:
``dpe.placement.Decision``, each candidate's score term by term: location
score, stickiness, fail count bans, colocations; how a tie was broken).

``plan_to_dot(plan)`` draws a plan as a Graphviz digraph.  The state to start
from is the engine's recorded runtime (``observed_from_runtime``) or, for a
deployable not running, everything up as the document asks
(``steady_state``).  The engine's back-off after failures in a row is left
out: a simulated failure is restarted at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from dpe.escalation import FailureWindow, Verdict
from dpe.placement import Decision, place, steady_services
from dpe.planner import (
    ActionKind,
    Applied,
    AssemblyStatus,
    Goal,
    Observed,
    Plan,
    ResourceStatus,
    resolve,
)
from dpe.policy import plan
from dpe.service_runtime import ServiceRecords
from dpe.states import AssemblyState, ResourceState
from foundation.model import Deployable, Escalation, Problems, ResourceId, check_name
from foundation.runtime_kinds import ASSEMBLY, INSTANCE, RESOURCE

Planner = Callable[[Deployable, Observed], Plan]
NOT_RUNNING = 7  # what a failed recurring monitor reports
# what the engine can lose (an assembly stopped, failed or being fenced is not up)
_MAY_FAIL = (
    AssemblyState.UNKNOWN,
    AssemblyState.CREATING,
    AssemblyState.CONNECTING,
    AssemblyState.RUNNING,
)


@dataclass(frozen=True)
class Failure:
    """A part to fail: an assembly, or one resource of it."""

    assembly: str
    resource: str | None = None

    @property
    def rid(self) -> ResourceId | None:
        return ResourceId(self.assembly, self.resource) if self.resource else None

    def __str__(self) -> str:
        return f"{self.assembly}/{self.resource}" if self.resource else self.assembly


@dataclass(frozen=True)
class Windows:
    """Times of recent failures, per level (the engine's failure windows)."""

    resources: Mapping[ResourceId, Sequence[float]] = field(default_factory=dict)
    assemblies: Mapping[str, Sequence[float]] = field(default_factory=dict)
    deployable: Sequence[float] = ()


@dataclass(frozen=True)
class WhatIf:
    failures: tuple[Failure, ...]
    observed: Observed  # the state planned from, failures applied
    plan: Plan
    notes: tuple[str, ...] = ()  # escalations, and failures that change nothing
    given_up: bool = False  # the deployable escalated past its last level
    placements: tuple[Decision, ...] = ()  # where each service goes, and why

    def describe(self) -> list[str]:
        """A readable account: what happens first, where services go, each action."""
        lines = [f"note: {n}" for n in self.notes]
        if self.given_up:
            return [*lines, "no actions: the deployable is failed until started again"]
        moves = [str(move) for move in self.plan.moves]  # where services go, and why
        lines += moves
        lines += [line for decision in self.placements for line in decision.explain()]
        if self.plan.empty:
            return [*lines, "no actions"]
        actions = self.plan.describe()[len(moves) :]
        lines += [f"{i}. {line}" for i, line in enumerate(actions, 1)]
        lines += [
            f"cannot start {rid}: {why}" for rid, why in sorted(self.plan.blocked.items(), key=str)
        ]
        return lines


def parse_failures(texts: Iterable[str], document: Deployable) -> tuple[Failure, ...]:
    """``ASSEMBLY`` or ``ASSEMBLY/RESOURCE`` of the document; every problem at once."""
    problems = Problems()
    failures = []
    for i, text in enumerate(texts):
        failure = _failure(text, document, f"fail[{i}]", problems)  # the query parameter
        if failure is not None:
            failures.append(failure)
    problems.raise_if_any("invalid failure")
    return tuple(failures)


def _failure(text: str, document: Deployable, path: str, problems: Problems) -> Failure | None:
    parts = text.split("/")
    if len(parts) > 2:
        problems.add(path, f"must be ASSEMBLY or ASSEMBLY/RESOURCE: {text!r}")
        return None
    before = len(problems.items)
    for part in parts:
        check_name(part, path, problems)
    if len(problems.items) != before:
        return None
    failure = Failure(parts[0], parts[1] if len(parts) == 2 else None)
    if document.assembly(failure.assembly) is None:
        problems.add(path, f"no assembly {failure.assembly!r} in deployable {document.name}")
    elif failure.rid is not None and document.resource(failure.rid) is None:
        problems.add(path, f"no resource {failure.resource!r} in assembly {failure.assembly!r}")
    else:
        return failure
    return None


def simulate(
    document: Deployable,
    observed: Observed,
    failures: Iterable[Failure | str],
    *,
    windows: Windows | None = None,
    planner: Planner = plan,
) -> Plan:
    """The plan the engine would carry out if ``failures`` happened now."""
    return what_if(document, observed, failures, windows=windows, planner=planner).plan


def what_if(
    document: Deployable,
    observed: Observed,
    failures: Iterable[Failure | str],
    *,
    windows: Windows | None = None,
    planner: Planner = plan,
) -> WhatIf:
    """``simulate`` with the state planned from and the escalations on the way."""
    failures = list(failures)
    texts = [f for f in failures if isinstance(f, str)]
    parsed = {t: f for t, f in zip(texts, parse_failures(texts, document), strict=True)}
    chosen = tuple(parsed[f] if isinstance(f, str) else f for f in failures)
    state = _Outcome(document, observed, windows or Windows())
    for failure in chosen:
        state.fail(failure)
    if state.given_up:
        return WhatIf(chosen, state.observed, Plan(), tuple(state.notes), given_up=True)
    planned = planner(document, state.observed)
    return WhatIf(
        chosen,
        state.observed,
        planned,
        tuple(state.notes),
        False,
        _placements(document, state.observed),
    )


def _placements(document: Deployable, observed: Observed) -> tuple[Decision, ...]:
    """Where each service goes and why (while running: a stop moves nothing)."""
    if observed.goal is Goal.STOP:
        return ()
    return tuple(place(document, observed).values())


class _Outcome:
    """Failures applied one by one, as the engine records them."""

    def __init__(self, document: Deployable, observed: Observed, windows: Windows) -> None:
        self.doc = document
        self.observed = observed
        self.windows = windows
        self.notes: list[str] = []
        self.given_up = False
        self.deployable_window = FailureWindow.restore(document.escalation, windows.deployable)
        self.assembly_windows: dict[str, FailureWindow] = {}
        self.resource_windows: dict[ResourceId, FailureWindow] = {}

    def fail(self, failure: Failure) -> None:
        if self.given_up or self.observed.goal is Goal.STOP:
            self.notes.append(f"{failure}: not counted (the deployable is stopping or failed)")
            return
        if failure.rid is None:
            self._assembly_failed(failure.assembly)
        else:
            self._resource_failed(failure.rid)

    def _resource_failed(self, rid: ResourceId) -> None:
        if self.observed.assembly(rid.assembly).state is not AssemblyState.RUNNING:
            self.notes.append(f"{rid}: its assembly is not running: nothing to fail")
            return
        status = self.observed.resource(rid)
        if status.state is ResourceState.UNRECOVERABLE:
            self.notes.append(f"{rid}: unrecoverable, left alone")
            return
        failed = ResourceStatus(ResourceState.FAILED, "monitor", NOT_RUNNING, status.applied)
        self._set_resource(rid, failed)
        if self._record(self.resource_windows, rid, self._resource_policy(rid)):
            window = self.resource_windows[rid]
            self.notes.append(f"{rid}: {window.reason('assembly')}")
            self._assembly_failed(rid.assembly)

    def _assembly_failed(self, name: str) -> None:
        assembly = self.observed.assembly(name)
        if assembly.state not in _MAY_FAIL:
            self.notes.append(f"{name}: {assembly.state}: nothing to fail")
            return
        self._set_assembly(name, replace(assembly, state=AssemblyState.FAILED))
        definition = self.doc.assembly(name)
        assert definition is not None
        if self._record(self.assembly_windows, name, definition.escalation):
            self.notes.append(f"{name}: {self.assembly_windows[name].reason('deployable')}")
            self._deployable_failed()

    def _deployable_failed(self) -> None:
        if self.deployable_window.record(self.observed.now) is Verdict.ESCALATE:
            self.notes.append(f"{self.doc.name}: {self.deployable_window.giving_up()}")
            self.given_up = True
            return
        self.notes.append(f"{self.doc.name}: restarting every assembly: first everything stops")
        self.observed = replace(self.observed, goal=Goal.STOP)

    def _record(self, windows: dict[Any, FailureWindow], key: Any, policy: Escalation) -> bool:
        if key not in windows:
            times = _times(self.windows, key)
            windows[key] = FailureWindow.restore(policy, times)
        return windows[key].record(self.observed.now) is Verdict.ESCALATE

    def _resource_policy(self, rid: ResourceId) -> Escalation:
        definition = self.doc.resource(rid)
        assert definition is not None
        return definition.escalation

    def _set_resource(self, rid: ResourceId, status: ResourceStatus) -> None:
        resources = {**self.observed.resources, rid: status}
        self.observed = replace(self.observed, resources=resources)

    def _set_assembly(self, name: str, status: AssemblyStatus) -> None:
        assemblies = {**self.observed.assemblies, name: status}
        self.observed = replace(self.observed, assemblies=assemblies)


def _times(windows: Windows, key: ResourceId | str) -> Sequence[float]:
    if isinstance(key, ResourceId):
        return windows.resources.get(key, ())
    return windows.assemblies.get(key, ())


# ---------------------------------------------------------------------------
# where to start from


def steady_state(document: Deployable, now: float = 0.0) -> Observed:
    """Everything up as the document asks: every assembly and resource running."""
    assemblies = {
        a.name: AssemblyStatus(AssemblyState.RUNNING, f"{a.name}.address", a.name)
        for a in document.assemblies
    }
    resources = {}
    for rid in document.resource_ids():
        definition = document.resource(rid)
        assert definition is not None
        params = resolve(definition, assemblies) or {}
        applied = Applied.of(definition, params)
        resources[rid] = ResourceStatus(ResourceState.RUNNING, "start", 0, applied, True)
    if document.services:  # each where placement puts it, and the references follow
        resources = steady_services(document, assemblies, now)
    return Observed(Goal.RUN, assemblies, resources, now=now)


def observed_from_runtime(
    document: Deployable, docs: Mapping[str, Mapping[str, Mapping[str, Any]]], now: float
) -> tuple[Observed, Windows]:
    """The state and failure windows a DPE recorded (``Store.get_runtime``)."""
    instances, assemblies = docs.get(INSTANCE, {}), docs.get(ASSEMBLY, {})
    statuses = {
        a.name: _assembly_status(instances.get(a.name), assemblies.get(a.name))
        for a in document.assemblies
    }
    records = docs.get(RESOURCE, {})
    resources = {
        rid: _resource_status(records.get(str(rid), {}))
        for rid in (*document.resource_ids(), *document.service_placements())
    }
    deployable = docs.get("deployable", {}).get("", {})
    stopping = deployable.get("state") in ("stopping", "stopped")
    services = ServiceRecords.restore(docs)
    observed = Observed(
        Goal.STOP if stopping else Goal.RUN,
        statuses,
        resources,
        now=now,
        service_failures=services.failures_of(document),
        move_requests=services.moves,
    )
    windows = Windows(
        resources={rid: _failures(records.get(str(rid))) for rid in resources},
        assemblies={name: _failures(assemblies.get(name)) for name in statuses},
        deployable=_failures(deployable),
    )
    return observed, windows


def _assembly_status(
    instance: Mapping[str, Any] | None, record: Mapping[str, Any] | None
) -> AssemblyStatus:
    state = _enum(AssemblyState, (record or {}).get("state"), AssemblyState.STOPPED)
    if instance is None:
        return AssemblyStatus(state)
    return AssemblyStatus(state, instance.get("address"), instance.get("hostname"))


def _resource_status(record: Mapping[str, Any]) -> ResourceStatus:
    state = _enum(ResourceState, record.get("state"), ResourceState.UNKNOWN)
    applied = record.get("applied")
    return ResourceStatus(
        state,
        record.get("last_op"),
        record.get("last_rc"),
        Applied.from_dict(applied) if applied else None,
        monitoring=state is ResourceState.RUNNING,  # the engine monitors what runs
    )


def _enum(cls: Any, value: Any, default: Any) -> Any:
    try:
        return cls(value)
    except ValueError:
        return default


def _failures(record: Mapping[str, Any] | None) -> tuple[float, ...]:
    return tuple(float(t) for t in (record or {}).get("failures", []))


# ---------------------------------------------------------------------------
# Graphviz


_COLOURS = {
    ActionKind.CREATE: "palegreen",
    ActionKind.FENCE: "salmon",
    ActionKind.PROBE: "lightgrey",
    ActionKind.STOP: "lightpink",
    ActionKind.START: "lightblue",
    ActionKind.MONITOR: "lightyellow",
}


def plan_to_dot(plan: Plan, name: str = "transition") -> str:
    """The plan as a Graphviz digraph: one node per action, an arrow per ordering."""
    ids = {action: f"a{i}" for i, action in enumerate(plan.actions)}
    lines = [f"digraph {_quote(name)} {{", "  rankdir=LR;", "  node [shape=box style=filled];"]
    for action, ident in ids.items():
        colour = _COLOURS[action.kind]
        lines.append(f"  {ident} [label={_quote(str(action))} fillcolor={colour}];")
    for first, then in sorted(plan.edges):
        lines.append(f"  {ids[first]} -> {ids[then]};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
