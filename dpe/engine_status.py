"""The engine's status: what runs where, in what state, and why (``status``, tests)."""

from __future__ import annotations

from typing import Any

from dpe.engine_assembly import AssemblyRunner
from dpe.engine_recorder import instance_doc
from dpe.engine_runners import DeployableLevel, Runners


def engine_status(level: DeployableLevel, runners: Runners, epoch: int | None) -> dict[str, Any]:
    return {
        "deployable": level.document.name,
        "state": str(level.state),
        "reason": level.cell.reason,
        "epoch": epoch,
        "monitoring": level.document.monitoring,
        "failures": list(level.window.times),
        "assemblies": {n: _assembly_row(a) for n, a in runners.assemblies.items()},
        "resources": {
            str(rid): r.to_doc() | {"reason": r.cell.reason} for rid, r in runners.resources.items()
        },
    }


def _assembly_row(runner: AssemblyRunner) -> dict[str, Any]:
    instance = runner.instance
    return {
        "state": str(runner.state),
        "reason": runner.cell.reason,
        "instance": instance_doc(instance) if instance else None,
        "failures": list(runner.window.times),
        "monitoring": runner.monitoring_doc(),
    }
