"""Pacemaker's scheduler as the oracle of the built-in planner, and as a planner.

``run_scheduler(cib)`` runs ``crm_simulate -x CIB -R --output-as=xml
--save-graph GRAPH`` (Debian ``pacemaker-cli-utils``; ``-S`` when asked to
simulate carrying it out too) with a timeout and reads back its transition
graph as our ``Action``s and ordering edges, plus its Transition Summary.  ``verify(xml)`` runs ``crm_verify``.
``PacemakerPlanner`` has the call shape of ``dpe.policy.plan``
(``planner(document, observed) -> Plan``): it is the ``policy_engine =
pacemaker`` option of dped.

How a transition graph becomes our actions: a resource's ``monitor`` with
interval 0 is a probe, with an interval the recurring monitor; ``start`` and
``stop`` are ours.  Everything else in the graph (pseudo events, ``cancel`` of
a monitor whose resource stops, ``delete`` of an old agent's history,
fail-count clean-ups) has no counterpart: it is dropped and the orderings
through it are kept between the actions on either side.

The Pacemaker planner decides the resource actions and their order; the
assembly actions (create and fence) are not Pacemaker's to decide -- its nodes
are given, and fencing is off in the CIB -- so they come from the built-in
rules, as do the reasons a resource cannot start (``Plan.blocked``) and when
to plan again after a back-off (``Plan.wake_at``).  The engine's probe rule
holds too: when Pacemaker probes, only the probes are kept (the rest of its
graph assumes what the probes will say; the next plan knows it).

Much of this module's length is the list of intended differences below, kept
beside the code that reads Pacemaker's answers so that both change together.

Intentional differences from Pacemaker
--------------------------------------

The differential test (``tests/integration/test_planner_differential.py``)
compares both planners on generated deployables and states; these are the
places where they differ on purpose.  Each has a name the test uses
(``DIFFERENCES``), an explicit test showing both answers, and a scope: the
harness requires the two plans to agree on every resource outside it.

``probe-first``
    The planner decides nothing but probes while any probe is due; Pacemaker
    plans the probes and, in the same graph, everything else as if the probes
    will find the resources stopped.  The harness compares Pacemaker's probes
    with ours, and the rest of its graph with our next plan once the probes
    said "not running".
``assembly-lifecycle``
    Creating and fencing instances are the planner's (``create``, ``fence``);
    Pacemaker's nodes are given and fencing is disabled.  Only resource
    actions are compared.
``escalation``
    Failure windows live in the engine: a resource that keeps failing makes
    its assembly fail, an assembly that keeps failing restarts the deployable.
    Pacemaker has no notion of it (its migration-threshold bans a resource
    from a node instead); the CIB carries the effect (a failed assembly), not
    the policy.
``hard-error-start``
    After a start that failed with a hard error (OCF 2-6) the resource is
    unrecoverable and the planner leaves it alone; Pacemaker stops it once
    more (to clean up a half-started service) and bans it from its assembly.
    Only that stop differs: what is ordered after it is stopped by both.
``hard-error-probe``
    A probe that answers with a hard error counts as "not running" and the
    planner tries a start (whose own hard error then makes the resource
    unrecoverable); Pacemaker bans the resource from its assembly at once and
    never starts it, nor what is ordered after it.
``hard-error-monitor``
    A recurring monitor that fails with a hard error is a failure like any
    other: the planner restarts the resource (as the 2012 original did);
    Pacemaker stops it and bans it from its assembly, and stops what is
    ordered after it.
``hard-error-stop``
    A stop that failed with a hard error makes the resource unrecoverable,
    and the planner goes on with the rest of the deployable as the design
    says: what it is ordered after may stop and restart.  Pacemaker cannot
    know that it stopped, blocks it, and so cannot stop what it is ordered
    after either (their stops come after its stop), nor restart what depends
    on those.
``unresolved-reference``
    A resource whose parameters refer to an assembly that is not up cannot
    start.  If it runs, the planner keeps it running with the values it was
    started with and restarts it for nothing (not for a changed definition:
    that waits until the values are known); if it has to stop because what
    it is ordered after restarts, it waits.  Pacemaker has no parameters that
    wait for another node: the CIB holds such a resource stopped when it is
    not running, but a running one Pacemaker restarts when it sees a reason
    to, with the values it was started with.
``failed-stop``
    A stop that failed softly: Pacemaker, with fencing off, blocks the
    resource, and with it the stops of what it is ordered after; the planner
    tries the stop again while the deployable runs -- though the engine never
    lets it come to that, since a failed stop makes it fence the assembly.
    When the deployable stops, both leave it alone (to the fence).  A service
    whose stop failed stays where it is in both (Pacemaker blocks it there,
    and stops the services that must run with it), and the engine fences that
    assembly before the service starts anywhere else, whatever the scores say.
    Nothing that must not run with it (a -INFINITY colocation, either way)
    starts on that assembly before the fence; Pacemaker keeps only the
    dependent of such a colocation away, and may start the other service
    beside the blocked copy.
``colocation-cycle``
    In a cycle of colocations a service can be assigned before the service it
    must run with (at INFINITY), which can then run nowhere.  We keep it
    stopped as well: it must run with that service.  Pacemaker, which breaks
    the cycle the same way, starts it alone -- unless that service's start was
    scheduled (it is ordered before something), in which case its unrunnable
    start blocks the first one's as ours does.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

from dpe.cib import Cib, build_cib
from dpe.placement import handover_edges
from dpe.planner import (
    Action,
    ActionKind,
    Applied,
    Edge,
    Observed,
    Plan,
    literal_params,
    resolve,
)
from dpe.policy import plan as builtin_plan
from foundation.errors import Code, OperationTimeout, PcloudError, Unavailable
from foundation.model import Deployable, Resource, ResourceId

CRM_SIMULATE = "crm_simulate"
CRM_VERIFY = "crm_verify"
DEFAULT_TIMEOUT = 30.0
PACKAGE = "pacemaker-cli-utils"

DIFFERENCES: Mapping[str, str] = {
    "probe-first": "the planner decides nothing but probes while any probe is due",
    "assembly-lifecycle": "creating and fencing instances are the planner's, not Pacemaker's",
    "escalation": "failure windows are the engine's; Pacemaker has no escalation",
    "hard-error-start": "Pacemaker stops a resource whose start failed hard; we leave it alone",
    "hard-error-probe": "a probe's hard error: we try a start, Pacemaker bans the resource",
    "hard-error-monitor": "a monitor's hard error: we restart, Pacemaker stops and bans",
    "failed-stop": "a failed stop: Pacemaker blocks the resource, we stop again or fence",
    "hard-error-stop": "a stop's hard error: Pacemaker blocks it and what it follows; we go on",
    "unresolved-reference": "a running resource waiting for an address: we hold, Pacemaker restarts",
    "colocation-cycle": "in a cycle, a service whose leader runs nowhere: we stop it, Pacemaker may not",
}

_RESOURCE_OPS = {"start": ActionKind.START, "stop": ActionKind.STOP}
_ASSEMBLY_KINDS = (ActionKind.CREATE, ActionKind.FENCE)


class SchedulerError(PcloudError):
    """crm_simulate or crm_verify failed, or answered something unreadable."""

    code = Code.INTERNAL


# ---------------------------------------------------------------------------
# running the tools


@dataclass(frozen=True)
class Verification:
    ok: bool
    messages: tuple[str, ...]  # crm_verify's errors and warnings, once each


@dataclass(frozen=True)
class SummaryLine:
    """One line of the Transition Summary (``Recover rsc_a_x (a)``), in our names."""

    action: str  # start, stop, restart, recover, ...
    resource: ResourceId | None
    node: str | None
    reason: str = ""
    blocked: bool = False


@dataclass(frozen=True)
class Transition:
    """What crm_simulate decided, in our actions."""

    actions: tuple[Action, ...]
    edges: frozenset[Edge]
    summary: tuple[SummaryLine, ...] = ()
    dropped: tuple[str, ...] = ()  # graph actions without a counterpart
    graph: str = ""  # the transition graph as crm_simulate saved it
    waiting: tuple[Action, ...] = ()  # in the graph, but wait for an action that cannot run

    def plan(self) -> Plan:
        return Plan(self.actions, self.edges)


def verify(xml: str, *, timeout: float = DEFAULT_TIMEOUT) -> Verification:
    """``crm_verify`` on a CIB."""
    with tempfile.TemporaryDirectory(prefix="pcloud-crm-") as work:
        cib_file = Path(work) / "cib.xml"
        cib_file.write_text(xml, encoding="utf-8")
        result = _run([CRM_VERIFY, "-V", "-x", str(cib_file)], work, timeout)
    lines = [line.strip() for line in (result.stderr + result.stdout).splitlines()]
    messages = tuple(dict.fromkeys(line for line in lines if line))
    return Verification(result.returncode == 0, messages)


def run_scheduler(
    cib: Cib, *, timeout: float = DEFAULT_TIMEOUT, execute: bool = False
) -> Transition:
    """``crm_simulate -R`` on ``cib``: its transition, in our actions.

    ``execute``: ``-S`` instead, which also simulates carrying the transition
    out (the same graph; far slower on large CIBs: minutes for 1,000 resources).
    """
    with tempfile.TemporaryDirectory(prefix="pcloud-crm-") as work:
        cib_file, graph_file = Path(work) / "cib.xml", Path(work) / "graph.xml"
        cib_file.write_text(cib.xml, encoding="utf-8")
        mode = "-S" if execute else "-R"
        argv = [CRM_SIMULATE, "-x", str(cib_file), mode, "--output-as=xml", *_datetime(cib)]
        result = _run([*argv, "--save-graph", str(graph_file)], work, timeout)
        # exit status 1 (-S): the simulated run could not finish the graph, as
        # some of its actions wait for actions that cannot run; the graph stands
        if result.returncode not in (0, 1) or not graph_file.exists():
            raise SchedulerError(_failure(CRM_SIMULATE, result))
        graph = graph_file.read_text(encoding="utf-8")
    output = _xml(result.stdout, f"{CRM_SIMULATE}'s output")
    _check_read(output, cib)
    transition = read_graph(graph, cib)
    return replace(transition, summary=tuple(_summary(output, cib)))


def _datetime(cib: Cib) -> list[str]:
    """The CIB's own time as crm_simulate's now: fail counts expire against it."""
    if cib.now is None:
        return []
    moment = datetime.fromtimestamp(math.floor(cib.now), tz=UTC)
    return [f"--set-datetime={moment.strftime('%Y-%m-%dT%H:%M:%SZ')}"]


def available() -> bool:
    """Whether crm_simulate and crm_verify are installed."""
    return all(shutil.which(tool) for tool in (CRM_SIMULATE, CRM_VERIFY))


def _run(argv: list[str], work: str, timeout: float) -> subprocess.CompletedProcess[str]:
    # the tools write a shadow copy of the CIB: keep it in ``work`` (HOME, CIB_shadow_dir)
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin"),
        "HOME": work,
        "CIB_shadow_dir": work,
        "LC_ALL": "C",
    }
    try:
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=work,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except FileNotFoundError:
        raise Unavailable(f"{argv[0]} is not installed (Debian package {PACKAGE})") from None
    except subprocess.TimeoutExpired:
        raise OperationTimeout(f"{argv[0]} did not answer within {timeout:g} s") from None


def _failure(tool: str, result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    detail = "; ".join(dict.fromkeys(lines[-5:])) or "no message"
    return f"{tool} failed (exit status {result.returncode}): {detail}"


def _xml(text: str, what: str) -> ET.Element:
    try:
        return ET.fromstring(text)
    except ET.ParseError as error:
        raise SchedulerError(f"cannot read {what}: {error}") from None


def _check_read(output: ET.Element, cib: Cib) -> None:
    """crm_simulate answers an empty plan for a CIB it could not read: notice it."""
    seen = {r.get("id") for r in output.iterfind("cluster_status/resources/resource")}
    missing = set(cib.resources) - seen
    if missing:
        example = sorted(missing)[0]
        raise SchedulerError(
            f"{CRM_SIMULATE} did not read the CIB: {len(missing)} resources missing ({example})"
        )


def _summary(output: ET.Element, cib: Cib) -> Iterable[SummaryLine]:
    for line in output.iterfind("actions/rsc_action"):
        yield SummaryLine(
            action=line.get("action", ""),
            resource=cib.resource(line.get("resource", "")),
            node=line.get("node") or line.get("dest"),
            reason=line.get("reason", ""),
            blocked=line.get("blocked") == "true",
        )


# ---------------------------------------------------------------------------
# reading a transition graph


@dataclass(frozen=True)
class _GraphOp:
    action: Action | None  # None: no counterpart
    label: str


def read_graph(text: str, cib: Cib) -> Transition:
    """A transition graph (``--save-graph``) as our actions and edges.

    An action that waits for one the graph does not hold (it cannot run: a
    resource it is ordered after is blocked) never runs: it is dropped, and
    so is everything waiting for it.
    """
    graph = _xml(text, "the transition graph")
    ops: dict[str, _GraphOp] = {}
    inputs: dict[str, list[str]] = {}
    for synapse in graph.iterfind("synapse"):
        for element in synapse.iterfind("action_set/*"):
            ident = element.get("id", "")
            ops[ident] = _graph_op(element, cib)
            inputs[ident] = [t.get("id", "") for t in synapse.iterfind("inputs/trigger/*")]
    never = _never_run(ops, inputs)
    runs = {i: op for i, op in ops.items() if i not in never}
    actions = tuple(dict.fromkeys(op.action for op in runs.values() if op.action is not None))
    dropped = [op.label for op in runs.values() if op.action is None]
    dropped += [f"{ops[i].label} (waits for an action that cannot run)" for i in sorted(never)]
    waiting = tuple(dict.fromkeys(a for i in never if (a := ops[i].action) is not None))
    return Transition(actions, _edges(runs, inputs), (), tuple(dropped), text, waiting)


def _never_run(ops: Mapping[str, _GraphOp], inputs: Mapping[str, list[str]]) -> set[str]:
    never: set[str] = set()
    changed = True
    while changed:
        changed = False
        for ident in ops:
            if ident not in never and any(i not in ops or i in never for i in inputs[ident]):
                never.add(ident)
                changed = True
    return never


def _graph_op(element: ET.Element, cib: Cib) -> _GraphOp:
    operation = element.get("operation", "")
    label = element.get("operation_key") or operation
    on_node = element.get("on_node")
    if on_node:
        label = f"{label} on {on_node}"
    if element.tag != "rsc_op":
        return _GraphOp(None, f"{element.tag} {label}")
    primitive = element.find("primitive")
    rid = cib.resource(primitive.get("id", "") if primitive is not None else "")
    if rid is not None and rid.is_service and on_node:
        rid = ResourceId(on_node, rid.resource)  # a service: its copy on that assembly
    if rid is None or on_node != rid.assembly:
        return _GraphOp(None, label)
    return _GraphOp(_action(rid, operation, _interval_ms(element), cib), label)


def _interval_ms(element: ET.Element) -> int:
    attributes = element.find("attributes")
    text = attributes.get("CRM_meta_interval", "0") if attributes is not None else "0"
    return int(text) if text.isdigit() else 0


def _action(rid: ResourceId, operation: str, interval_ms: int, cib: Cib) -> Action | None:
    if operation in _RESOURCE_OPS:
        return Action(_RESOURCE_OPS[operation], rid.assembly, rid.resource)
    if operation != "monitor":
        return None  # cancel, delete, notify...
    if interval_ms == 0:
        return Action(ActionKind.PROBE, rid.assembly, rid.resource)
    interval = cib.monitor_intervals.get(rid, interval_ms / 1000)
    return Action(ActionKind.MONITOR, rid.assembly, rid.resource, interval)


def _edges(ops: Mapping[str, _GraphOp], inputs: Mapping[str, list[str]]) -> frozenset[Edge]:
    """Edges between our actions, through the graph actions that have no counterpart."""
    edges: set[Edge] = set()
    for ident, op in ops.items():
        if op.action is None:
            continue
        seen: set[str] = set()
        todo = list(inputs.get(ident, []))
        while todo:
            before = todo.pop()
            if before in seen or before not in ops:
                continue
            seen.add(before)
            first = ops[before].action
            if first is None:
                todo.extend(inputs.get(before, []))
            elif first != op.action:
                edges.add((first, op.action))
    return frozenset(edges)


# ---------------------------------------------------------------------------
# the planner


Scheduler = Callable[[Cib], Transition]


@dataclass
class PacemakerPlanner:
    """``policy_engine = pacemaker``: Pacemaker decides the resource actions.

    ``planner(document, observed) -> Plan``, like ``dpe.policy.plan``.  Each
    call runs ``crm_simulate -R`` once: about 30 ms (mostly process start-up)
    for a few resources, about a second for 1,000 (``bench/planner.py``).
    """

    name: ClassVar[str] = "pacemaker"  # the policy engine, as events name it
    blocking: ClassVar[bool] = True  # it runs a program: the engine calls it in a thread
    timeout: float = DEFAULT_TIMEOUT
    scheduler: Scheduler | None = None  # tests: a stand-in for crm_simulate
    last: Transition | None = field(default=None, init=False, repr=False)

    def __call__(self, document: Deployable, observed: Observed) -> Plan:
        cib = build_cib(document, observed)
        transition = self._schedule(cib)
        self.last = transition
        return combine(builtin_plan(document, observed), transition, document, observed)

    def _schedule(self, cib: Cib) -> Transition:
        if self.scheduler is not None:
            return self.scheduler(cib)
        return run_scheduler(cib, timeout=self.timeout)


def combine(rules: Plan, transition: Transition, document: Deployable, observed: Observed) -> Plan:
    """Pacemaker's resource actions with the built-in assembly actions and reasons."""
    actions = list(transition.actions)
    if any(a.kind is ActionKind.PROBE for a in actions):
        actions = [a for a in actions if a.kind is ActionKind.PROBE]
    kept = set(actions)
    edges = {(a, b) for a, b in transition.edges if a in kept and b in kept}
    assembly_actions = [a for a in rules.actions if a.kind in _ASSEMBLY_KINDS]
    edges |= {(a, b) for a, b in rules.edges if a in assembly_actions and b in assembly_actions}
    fences = {a.assembly: a for a in assembly_actions if a.kind is ActionKind.FENCE}
    for action in actions:
        if action.kind is ActionKind.STOP and action.assembly in fences:
            edges.add((action, fences[action.assembly]))
    started = {a.rid for a in actions if a.kind is ActionKind.START}
    every = (*assembly_actions, *actions)
    combined = Plan(
        actions=every,
        edges=frozenset(edges),
        params={a: params_for(a, document, observed) for a in actions},
        blocked={r: why for r, why in rules.blocked.items() if r not in started},
        wake_at=rules.wake_at,
        moves=rules.moves,
    )
    # Pacemaker takes a failed assembly for cleanly down: a service moving away
    # from it still starts only once it is fenced (or its old copy stopped)
    handover = handover_edges(document, observed, combined)
    return replace(combined, edges=combined.edges | frozenset(handover))


def params_for(action: Action, document: Deployable, observed: Observed) -> Mapping[str, str]:
    """The parameters an action runs with, as the built-in planner gives them."""
    rid = action.rid
    assert rid is not None
    definition = document.resource(rid) or observed.orphans.get(rid)
    if definition is None:
        return {}
    resolved = resolve(definition, observed.assemblies)
    applied = observed.resource(rid).applied
    known = resolved if resolved is not None else _applied_or_literal(applied, definition)
    if action.kind is ActionKind.START:
        return resolved or {}
    if action.kind is ActionKind.STOP and applied is not None:
        return dict(applied.params)
    return known


def _applied_or_literal(applied: Applied | None, definition: Resource) -> Mapping[str, str]:
    return dict(applied.params) if applied else literal_params(definition)


# ---------------------------------------------------------------------------
# comparing two plans


@dataclass(frozen=True)
class Comparison:
    """How two plans differ in their resource actions and the order between them."""

    only_first: tuple[Action, ...] = ()
    only_second: tuple[Action, ...] = ()
    order_only_first: tuple[Edge, ...] = ()  # x before y in the first plan only
    order_only_second: tuple[Edge, ...] = ()

    @property
    def agree(self) -> bool:
        return not (
            self.only_first or self.only_second or self.order_only_first or self.order_only_second
        )

    def describe(self, first: str = "ours", second: str = "pacemaker") -> list[str]:
        lines = [f"only {first}: {a}" for a in self.only_first]
        lines += [f"only {second}: {a}" for a in self.only_second]
        lines += [f"only {first} orders {a} before {b}" for a, b in self.order_only_first]
        lines += [f"only {second} orders {a} before {b}" for a, b in self.order_only_second]
        return lines


def compare(first: Plan, second: Plan, ignore: Iterable[ResourceId] = ()) -> Comparison:
    """Compare the resource actions of two plans, and their order (probes: as a set).

    Actions of the resources in ``ignore`` are left out (and orderings through
    them with them), and so are assembly actions.  Orderings are compared as
    transitive closures over the actions both plans share, probes aside.
    """
    skip = set(ignore)
    ours = {a for a in first.actions if a.rid is not None and a.rid not in skip}
    theirs = {a for a in second.actions if a.rid is not None and a.rid not in skip}
    shared = {a for a in ours & theirs if a.kind is not ActionKind.PROBE}
    order_first, order_second = orderings(first, shared, skip), orderings(second, shared, skip)
    return Comparison(
        only_first=tuple(sorted(ours - theirs)),
        only_second=tuple(sorted(theirs - ours)),
        order_only_first=tuple(sorted(order_first - order_second)),
        order_only_second=tuple(sorted(order_second - order_first)),
    )


def orderings(plan: Plan, among: Iterable[Action], without: Iterable[ResourceId] = ()) -> set[Edge]:
    """Every (x, y) of ``among`` with x ordered before y, directly or not.

    Paths through the actions of the resources ``without`` do not count.
    """
    keep, skip = set(among), set(without)
    after: dict[Action, set[Action]] = {}
    for a, b in plan.edges:
        if a.rid not in skip and b.rid not in skip:
            after.setdefault(a, set()).add(b)
    pairs: set[Edge] = set()
    for start in keep:
        seen: set[Action] = set()
        todo = list(after.get(start, ()))
        while todo:
            action = todo.pop()
            if action in seen:
                continue
            seen.add(action)
            if action in keep:
                pairs.add((start, action))
            todo.extend(after.get(action, ()))
    return pairs
