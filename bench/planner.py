"""Planner time per decision: the built-in planner beside crm_simulate, on the same CIB.

For deployables of 1, 10, 100 and 1,000 resources (ten per assembly, each
assembly's resources in a chain, every other assembly's chain after the first
assembly's last resource: chains and a fan), three decisions:

- ``steady``: everything running and monitored -- nothing to do (the decision
  the engine makes most often);
- ``recover``: one resource of the first assembly failed (its monitor returned
  7) -- restart it and everything ordered after it;
- ``start``: every resource probed stopped -- start them all in order.

Each decision is timed as the built-in planner (``dpe.policy.plan``), as the
CIB export (``dpe.cib.build_cib``), as ``crm_simulate -R`` on that CIB with its
graph read back (``dpe.pacemaker.run_scheduler``; process start-up included,
as the engine would pay it), as the whole ``PacemakerPlanner``, and -- up to
``--execute-up-to`` resources, since it takes minutes for 1,000 -- as
``crm_simulate -S`` (which also simulates carrying the transition out; the
differential test uses it).  It also says whether the two planners agreed.
Results go to ``bench/results/planner.json``::

    .venv/bin/python bench/planner.py [--sizes 1 10 100 1000] [--execute-up-to 100]
        [--budget SECONDS] [--out FILE] [--quick]

from the repository root.  Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: bench/planner.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS_DIR, machine, stats
from dpe.cib import build_cib
from dpe.pacemaker import PacemakerPlanner, compare, run_scheduler
from dpe.planner import Applied, AssemblyStatus, Goal, Observed, ResourceStatus, resolve
from dpe.policy import plan
from dpe.states import AssemblyState, ResourceState
from foundation.model import Deployable, ResourceId, parse

PER_ASSEMBLY = 10
LONG = 600.0  # seconds: crm_simulate on 1,000 resources is slow, not stuck
DECISIONS = ("steady", "recover", "start")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 100, 1000])
    parser.add_argument("--budget", type=float, default=1.0, help="seconds per figure (about)")
    parser.add_argument("--execute-up-to", type=int, default=100, help="crm_simulate -S up to")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "planner.json")
    parser.add_argument("--quick", action="store_true", help="short budget, -S up to 10 only")
    args = parser.parse_args()
    if args.quick:
        args.budget, args.execute_up_to = min(args.budget, 0.3), min(args.execute_up_to, 10)
    before = machine()
    rows = [
        measure(size, decision, args.budget, size <= args.execute_up_to)
        for size in args.sizes
        for decision in DECISIONS
    ]
    report = {
        "benchmark": "planner",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine_before": before,
        "machine_after": machine(),
        "unit": "milliseconds per decision",
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(rows))
    return 0


def deployable(resources: int) -> Deployable:
    """Chains of ten per assembly; every other chain after the first one's end."""
    count = max(1, -(-resources // PER_ASSEMBLY))
    sizes = [min(PER_ASSEMBLY, resources - i * PER_ASSEMBLY) for i in range(count)]
    assemblies = [
        {"name": f"a{i}", "resources": [{"name": f"r{j}", "type": "Dummy"} for j in range(n)]}
        for i, n in enumerate(sizes)
    ]
    constraints = [
        {"first": f"a{i}/r{j}", "then": f"a{i}/r{j + 1}"}
        for i, n in enumerate(sizes)
        for j in range(n - 1)
    ]
    constraints += [{"first": f"a0/r{sizes[0] - 1}", "then": f"a{i}/r0"} for i in range(1, count)]
    return parse({"name": "bench", "assemblies": assemblies, "constraints": constraints})


def observed(doc: Deployable, decision: str) -> Observed:
    assemblies = {
        a.name: AssemblyStatus(AssemblyState.RUNNING, f"10.0.{i // 250}.{i % 250 + 1}", a.name)
        for i, a in enumerate(doc.assemblies)
    }
    resources = {}
    for rid in doc.resource_ids():
        definition = doc.resource(rid)
        assert definition is not None
        applied = Applied.of(definition, resolve(definition, assemblies) or {})
        resources[rid] = ResourceStatus(ResourceState.RUNNING, "start", 0, applied, True)
        if decision == "start":
            resources[rid] = ResourceStatus(ResourceState.STOPPED, "probe", 7)
    if decision == "recover":
        failed = ResourceId("a0", "r0")
        resources[failed] = ResourceStatus(ResourceState.FAILED, "monitor", 7, applied)
    return Observed(Goal.RUN, assemblies, resources)


def measure(size: int, decision: str, budget: float, execute: bool) -> dict[str, Any]:
    doc = deployable(size)
    obs = observed(doc, decision)
    cib = build_cib(doc, obs)
    ours, theirs = plan(doc, obs), run_scheduler(cib).plan()
    row: dict[str, Any] = {
        "resources": size,
        "decision": decision,
        "actions": len(ours.actions),
        "agree": compare(ours, theirs).agree,
        "cib_bytes": len(cib.xml.encode()),
    }
    row["builtin"] = timing(lambda: plan(doc, obs), budget)
    row["cib_export"] = timing(lambda: build_cib(doc, obs), budget)
    row["crm_simulate"] = timing(lambda: run_scheduler(cib, timeout=LONG), budget, at_most=20)
    pacemaker = PacemakerPlanner(timeout=LONG)
    row["pacemaker_planner"] = timing(lambda: pacemaker(doc, obs), budget, at_most=20)
    if execute:
        simulated = timing(lambda: run_scheduler(cib, timeout=LONG, execute=True), budget, 20)
        row["crm_simulate_execute"] = simulated
    print(f"{size:5d} {decision:8s} done", file=sys.stderr)
    return row


def timing(work: Callable[[], object], budget: float, at_most: int = 10_000) -> dict[str, Any]:
    """Milliseconds per call, repeated for about ``budget`` seconds (at least 3 times)."""
    values: list[float] = []
    deadline = time.perf_counter() + budget
    while len(values) < 3 or (time.perf_counter() < deadline and len(values) < at_most):
        started = time.perf_counter()
        work()
        values.append((time.perf_counter() - started) * 1000)
    return stats(values, digits=3)


def table(rows: list[dict[str, Any]]) -> str:
    head = "resources decision actions agree builtin_ms cib_ms crm_simulate_R_ms"
    lines = [head + " pacemaker_planner_ms crm_simulate_S_ms"]
    for r in rows:
        executed = r.get("crm_simulate_execute", {}).get("median")
        lines.append(
            f"{r['resources']:9d} {r['decision']:8s} {r['actions']:7d} {r['agree']!s:5s}"
            f" {r['builtin']['median']:10.3f} {r['cib_export']['median']:6.1f}"
            f" {r['crm_simulate']['median']:17.1f} {r['pacemaker_planner']['median']:20.1f}"
            f" {executed if executed is not None else '-':>17}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
