"""Failover services: their fail counts per assembly, requested moves, announced moves.

A service runs on the best running one of its assemblies (``dpe.placement``
decides).  Here is what the engine keeps for that: how often a service failed
on each assembly (``migration-threshold``), the moves an administrator asked
for (``deployable_service_move``: done, and forgotten, once the service runs
there), and an event, once, for each move the planner decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dpe.engine_log import Context
from dpe.engine_recorder import Recorder
from dpe.engine_runners import DeployableLevel, Runners
from dpe.planner import Move, Plan
from dpe.runtime import Runtime
from dpe.service_runtime import ServiceRecords
from dpe.states import ResourceState
from foundation.clock import Clock
from foundation.errors import PcloudError
from foundation.model import ResourceId
from foundation.runtime_kinds import MOVE, SERVICE, Docs


@dataclass(eq=False)
class ServiceMoves:
    runtime: Runtime
    clock: Clock
    level: DeployableLevel
    runners: Runners
    recorder: Recorder
    log: Context
    records: ServiceRecords = field(
        default_factory=ServiceRecords, init=False
    )  # fail counts, moves asked
    _noted: dict[str, tuple[str | None, str | None]] = field(default_factory=dict, init=False)

    def restore(self, docs: Docs) -> None:
        self.records = ServiceRecords.restore(docs)

    def count_failure(self, rid: ResourceId) -> None:
        """A service failed on an assembly (a pinned resource's window is all there is)."""
        service = self.level.document.service_copy(rid)
        if service is None:
            return
        doc = self.records.failed(service, rid.assembly, self.clock.time())
        self.recorder.put(SERVICE, service.name, doc)

    def note(self, plan: Plan) -> bool:
        """Say once where each service goes and why (not while probing).  True when a
        requested move ended here: the plan was made with it, so plan again."""
        if plan.probing:
            return False
        ended = False
        for name, assembly in list(self.records.moves.items()):
            runner = self.runners.resources.get(ResourceId(assembly, name))
            if runner is None or runner.state is ResourceState.RUNNING:
                ended |= self.done(ResourceId(assembly, name))  # already there, or impossible
        noted = {}
        for move in plan.moves:
            noted[move.service] = (move.source, move.target)
            if self._noted.get(move.service) != noted[move.service]:
                self._announce(move)
        self._noted = noted
        return ended

    def _announce(self, move: Move) -> None:
        where = move.target or move.source
        runner = self.runners.resources.get(ResourceId(where, move.service)) if where else None
        if move.target is None:
            text = f"{move.service} cannot run anywhere: {move.reason}"
        elif move.source is None:
            text = f"{move.service} placed on {move.target}: {move.reason}"
        else:
            text = f"{move.service} moves from {move.source} to {move.target}: {move.reason}"
        if runner is not None:
            runner.cell.note(text)
        else:
            self.level.cell.note(text)

    def load_requested(self) -> bool:
        """Moves an administrator asked for since (``deployable_service_move``); True
        when they are not the ones known (the plan must be made again)."""
        try:
            docs = self.runtime.load()
        except PcloudError as error:
            self.log.warning("cannot read the requested moves: %s", error)
            return False
        moves = ServiceRecords.restore(docs).moves
        changed = moves != self.records.moves
        self.records.moves = moves
        return changed

    def done(self, rid: ResourceId) -> bool:
        """A requested move is done once the service runs there: the request ends
        (True; False when no such move was asked)."""
        if self.records.moves.get(rid.resource) != rid.assembly:
            return False
        del self.records.moves[rid.resource]
        self.recorder.delete(MOVE, rid.resource)
        runner = self.runners.resources.get(rid)
        if runner is None:
            self.level.cell.note(
                f"move of {rid.resource} to {rid.assembly} dropped: not a candidate"
            )
        else:
            runner.cell.note(f"{rid.resource} moved to {rid.assembly} as requested")
        return True
