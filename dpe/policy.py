"""The policy engine's entry point: place the services, then plan the transition.

``dpe.placement`` decides where each service runs (Pacemaker's location scores,
stickiness, colocation); ``dpe.planner`` turns a document whose resources are
all pinned to an assembly into the ordered actions.  Both build on the
planner's vocabulary, so the choice between them sits above the two.
"""

from __future__ import annotations

from dpe import placement
from dpe.planner import Observed, Plan, plan_pinned
from foundation.model import Deployable


def plan(document: Deployable, observed: Observed) -> Plan:
    """The actions that bring the deployable from ``observed`` towards its goal.

    Services are placed first, then planned as resources pinned where they were
    placed.
    """
    if document.services:
        return placement.plan(document, observed)
    return plan_pinned(document, observed)
