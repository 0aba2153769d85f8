"""Carrying out a transition graph, as Pacemaker's transition engine does.

Independent actions run in parallel, ordered ones in order.  An action whose
result differs from its target fails the transition: nothing new is started,
the actions in flight finish, and the engine plans again from what is now
true.  An external event (a failure elsewhere, a reload) aborts the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from enum import StrEnum
from typing import Any

from dpe.planner import Action, Plan

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    COMPLETED = "completed"  # every action reached its target
    FAILED = "failed"  # an action did not
    ABORTED = "aborted"  # stopped early to replan


Perform = Callable[[Action], Coroutine[Any, Any, bool]]


async def execute(plan: Plan, perform: Perform, aborted: Callable[[], bool]) -> Outcome:
    before = plan.predecessors()
    pending = list(plan.actions)
    done: set[Action] = set()
    running: dict[asyncio.Task[bool], Action] = {}
    failed = False
    try:
        while True:
            if not failed and not aborted():
                for action in [a for a in pending if before[a] <= done]:
                    pending.remove(action)
                    running[asyncio.create_task(perform(action))] = action
            if not running:
                break
            finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                action = running.pop(task)
                if _succeeded(task, action):
                    done.add(action)
                else:
                    failed = True
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
    if failed:
        return Outcome.FAILED
    return Outcome.ABORTED if pending else Outcome.COMPLETED


def _succeeded(task: asyncio.Task[bool], action: Action) -> bool:
    if task.cancelled():
        return False  # its assembly was lost while it ran
    error = task.exception()
    if error is not None:
        log.error("%s raised %r", action, error, exc_info=error)
        return False
    return task.result()
