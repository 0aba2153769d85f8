"""Ctrl-C and SIGTERM where raising them at any bytecode would be wrong.

Elsewhere Ctrl-C raises ``KeyboardInterrupt`` (Python's default; cmd2's while a
command runs) and the one-shot runner makes SIGTERM do the same
(``raise_on_terminate``), so a killed command cleans up as an interrupted one does.

Two kinds of block take them over:

- around a commit (``interrupts_held``) they are recorded, never raised: the
  commit completes, or never starts;
- around work in a library that frees its objects in finalizers
  (``interrupts_at_checkpoints``) they are raised only where the work says it may
  stop.  A handler's exception raised while a ``__del__`` runs is printed as
  "Exception ignored" and lost: M2Crypto frees a buffer that way for every key it
  writes, so a ^C while thousands of keys were made was missed in 2 to 5 tries of
  20 on a busy machine.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

HELD = (signal.SIGINT, signal.SIGTERM)
Handler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None


@contextmanager
def interrupts_held() -> Iterator[list[int]]:
    """The signals that arrived during the block (recorded, not raised)."""
    received: list[int] = []
    with _recording(received):
        yield received


@contextmanager
def interrupts_at_checkpoints() -> Iterator[Callable[[], None]]:
    """A ``checkpoint()`` for the block: a signal that arrived before it is handled
    there, as it would have been when it came (``KeyboardInterrupt``, mostly); the
    block's end is a checkpoint too."""
    received: list[int] = []
    with _recording(received) as previous:

        def checkpoint() -> None:
            while received:
                _handle_late(received.pop(0), previous)

        yield checkpoint
        checkpoint()


@contextmanager
def _recording(received: list[int]) -> Iterator[dict[int, Handler]]:
    """Each of ``HELD`` appended to ``received`` as it arrives; the handlers it had
    before, for the block to call."""
    if threading.current_thread() is not threading.main_thread():
        yield {}  # only the main thread receives signals
        return

    def record(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)

    previous: dict[int, Handler] = {signum: signal.signal(signum, record) for signum in HELD}
    try:
        yield previous
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _handle_late(signum: int, previous: dict[int, Handler]) -> None:
    handler = previous[signum]
    if callable(handler):
        handler(signum, None)  # raises KeyboardInterrupt, for those pcloudsh installs
    elif handler == signal.SIG_DFL:  # the signal's own action: end the process
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)


def raise_on_terminate() -> None:
    """SIGTERM interrupts the command like Ctrl-C (Python's default would skip every clean-up)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt
