"""Process helpers the rigs share."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterable


def kill_until_gone(find: Callable[[], Iterable[int]], attempts: int = 50) -> None:
    """SIGKILL what ``find`` lists (woken first: a stopped process dies only once
    continued) until it lists nothing, ``attempts`` times at most, 0.1 s apart."""
    for _ in range(attempts):
        left = list(find())
        if not left:
            return
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
