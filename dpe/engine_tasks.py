"""The tasks one part of the engine runs: spawned, logged if they fail, ended together."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from dpe.engine_log import Context


class Tasks:
    def __init__(self, log: Context) -> None:
        self.log = log
        self.running: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self.running.add(task)
        task.add_done_callback(self._finished)
        return task

    def cancel(self) -> None:
        """Cancel every one (but the task calling, which ends by itself)."""
        current = asyncio.current_task()
        for task in self.running:
            if task is not current:
                task.cancel()

    async def end(self) -> None:
        """Cancel every one and wait until all have ended."""
        tasks = list(self.running)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self.running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("task failed: %r", task.exception(), exc_info=task.exception())
