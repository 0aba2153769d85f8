"""What the engine records about services beside their copies' states.

Runtime kind ``service`` (key: the service): ``{"failures": {ASSEMBLY: [times]}}``,
its fail counts on each assembly (Pacemaker's fail count, kept for
``migration_threshold``).  Runtime kind ``move`` (key: the service):
``{"to": ASSEMBLY, "requested_at": time}``, a move an administrator asked for
(written by cped); the engine deletes it once the service runs there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dpe.assignment import current_failures
from foundation.model import Deployable, ResourceId, Service
from foundation.runtime_kinds import MOVE, SERVICE

KEPT_FAILURES = 20  # more than any sensible migration threshold


@dataclass
class ServiceRecords:
    failures: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    moves: dict[str, str] = field(default_factory=dict)

    @classmethod
    def restore(cls, docs: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> ServiceRecords:
        failures = {
            name: {
                str(a): [float(t) for t in times] for a, times in doc.get("failures", {}).items()
            }
            for name, doc in docs.get(SERVICE, {}).items()
        }
        moves = {name: str(doc["to"]) for name, doc in docs.get(MOVE, {}).items() if doc.get("to")}
        return cls(failures, moves)

    def failed(self, service: Service, assembly: str, now: float) -> dict[str, Any]:
        """Count a failure of ``service`` on ``assembly``; the record to store."""
        times = self.failures.setdefault(service.name, {}).setdefault(assembly, [])
        times.append(now)
        times[:] = current_failures(times, service)  # an expired count starts again
        del times[:-KEPT_FAILURES]
        return {"failures": self.failures[service.name]}

    def failures_of(self, document: Deployable) -> dict[ResourceId, tuple[float, ...]]:
        return {
            ResourceId(assembly, name): tuple(times)
            for name, by_assembly in self.failures.items()
            if document.service(name) is not None
            for assembly, times in by_assembly.items()
        }
