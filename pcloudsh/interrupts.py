"""Ctrl-C and SIGTERM around a commit: held back while it runs, so it completes or never starts.

Elsewhere Ctrl-C raises ``KeyboardInterrupt`` (Python's default; cmd2's while a
command runs) and the one-shot runner makes SIGTERM do the same
(``raise_on_terminate``), so a killed command cleans up as an interrupted one does.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

HELD = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def interrupts_held() -> Iterator[list[int]]:
    """The signals that arrived during the block (recorded, not raised)."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received  # only the main thread receives signals
        return

    def record(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)

    previous = {signum: signal.signal(signum, record) for signum in HELD}
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def raise_on_terminate() -> None:
    """SIGTERM interrupts the command like Ctrl-C (Python's default would skip every clean-up)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt
