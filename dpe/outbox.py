"""A DPE's store writes that could not be made yet, kept in order for later.

When the store does not answer for a moment (PostgreSQL restarting, a
network hiccup shorter than the lease's margin) the DPE keeps acting, and
what it records -- events, runtime documents -- waits here, in the order it
happened, and is written once the store answers again (after the next lease
renewal).  Once something waits, later writes queue behind it, so the store
never sees them out of order.  Writes stay fenced: one refused because the
lease moved on (``LeaseLost``) ends the DPE's acting, and what is still
queued is dropped with it (it was never acknowledged).  A DPE that cannot
reach the store for longer fences itself and exits; its queue goes with it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from foundation.errors import LeaseLost, PcloudError

T = TypeVar("T")
LIMIT = 10_000  # far more than a DPE writes in the seconds before it would fence itself


class Outbox:
    def __init__(self, log: logging.Logger | logging.LoggerAdapter[Any], limit: int = LIMIT):
        self.log = log
        self.limit = limit
        self.pending: deque[tuple[Callable[[], object], str]] = deque()

    def write(self, op: Callable[[], T], what: str) -> T | None:
        """Write now (its result), or queue it (None); LeaseLost is the caller's."""
        if self.pending:
            self._queue(op, what)
            return None
        try:
            return op()
        except LeaseLost:
            raise
        except PcloudError as error:
            self.log.warning("cannot record %s now (%s): kept to write again", what, error)
            self._queue(op, what)
            return None

    def flush(self) -> int:
        """Write what waits, in order, until one fails again; how many were written."""
        written = 0
        while self.pending:
            op, what = self.pending[0]
            try:
                op()
            except LeaseLost:
                self.pending.clear()
                raise
            except PcloudError as error:
                self.log.warning("still cannot record %s (%s)", what, error)
                break
            self.pending.popleft()
            written += 1
        if written:
            self.log.info("recorded %d write(s) kept while the store did not answer", written)
        return written

    def _queue(self, op: Callable[[], object], what: str) -> None:
        if len(self.pending) >= self.limit:
            _, dropped = self.pending.popleft()
            self.log.error("too many writes waiting for the store: %s dropped", dropped)
        self.pending.append((op, what))
