"""Progress of long steps (building a JEOS), on standard error.

The image builder reports ``(phase, fraction)``; on a terminal each phase gets
its own rich progress bar, drawn as it starts; into a pipe or a file, one line
when a phase starts and one when it is done, so a log stays short.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TextIO

from pcloudsh.render import is_terminal

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

Report = Callable[[str, float], None]


@contextlib.contextmanager
def show_progress(stream: TextIO, title: str) -> Iterator[Report]:
    """A ``progress(phase, fraction)`` callback for the duration of the block."""
    if is_terminal(stream):
        with _bars(stream, title) as report:
            yield report
    else:
        yield PlainProgress(stream, title)


class PlainProgress:
    def __init__(self, stream: TextIO, title: str, clock: Callable[[], float] = time.monotonic):
        self.stream = stream
        self.title = title
        self.clock = clock
        self.started: dict[str, float] = {}
        self.done: set[str] = set()

    def __call__(self, phase: str, fraction: float) -> None:
        if phase not in self.started:
            self.started[phase] = self.clock()
            self._line(f"{phase}...")
        if fraction >= 1.0 and phase not in self.done:
            self.done.add(phase)
            self._line(f"{phase} done ({self.clock() - self.started[phase]:.0f} s)")

    def _line(self, text: str) -> None:
        self.stream.write(f"pcloudsh: {self.title}: {text}\n")
        self.stream.flush()


@contextlib.contextmanager
def _bars(stream: TextIO, title: str) -> Iterator[Report]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    console = Console(file=stream, highlight=False, markup=False, emoji=False)
    progress = Progress(
        TextColumn(f"{title}: {{task.description:<12}}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    tasks: dict[str, TaskID] = {}
    with progress:
        yield lambda phase, fraction: _advance(progress, tasks, phase, fraction)


def _advance(progress: Progress, tasks: dict[str, TaskID], phase: str, fraction: float) -> None:
    if phase not in tasks:
        tasks[phase] = progress.add_task(phase, total=1.0)
    progress.update(tasks[phase], completed=min(max(fraction, 0.0), 1.0))
    if fraction >= 1.0:
        progress.stop_task(tasks[phase])
