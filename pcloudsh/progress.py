"""Progress of long steps (building a JEOS, starting deployables), on standard error.

The image builder reports ``(phase, fraction)``; on a terminal each phase gets
its own rich progress bar, drawn as it starts; into a pipe or a file, one line
when a phase starts and one when it is done, so a log stays short.

Waiting for many deployables reports ``(running, failed)`` counts: on a
terminal one bar; into a pipe or a file, a line when the counts change, at
most every ``COUNT_LINE_EVERY`` seconds, and the last counts at the end.
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
CountReport = Callable[[int, int], None]  # (done, failed)
COUNT_LINE_EVERY = 10.0


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


@contextlib.contextmanager
def show_counts(stream: TextIO, title: str, total: int) -> Iterator[CountReport]:
    """A ``progress(running, failed)`` callback for the duration of the block."""
    if is_terminal(stream):
        with _count_bar(stream, title, total) as report:
            yield report
    else:
        plain = PlainCounts(stream, title, total)
        yield plain
        plain.finish()


class PlainCounts:
    def __init__(
        self,
        stream: TextIO,
        title: str,
        total: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.title = title
        self.total = total
        self.clock = clock
        self.started = clock()
        self.written: tuple[int, int] | None = None
        self.latest = (0, 0)
        self.last_line = -COUNT_LINE_EVERY

    def __call__(self, running: int, failed: int) -> None:
        self.latest = (running, failed)
        now = self.clock() - self.started
        if self.latest != self.written and now - self.last_line >= COUNT_LINE_EVERY:
            self._line(now)

    def finish(self) -> None:
        if self.latest != self.written:
            self._line(self.clock() - self.started)

    def _line(self, now: float) -> None:
        running, failed = self.latest
        text = f"{running} of {self.total} running"
        text += f", {failed} failed" if failed else ""
        self.stream.write(f"pcloudsh: {self.title}: {text} ({now:.0f} s)\n")
        self.stream.flush()
        self.written, self.last_line = self.latest, now


@contextlib.contextmanager
def _count_bar(stream: TextIO, title: str, total: int) -> Iterator[CountReport]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(file=stream, highlight=False, markup=False, emoji=False)
    progress = Progress(
        TextColumn(f"{title}: running"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
    )
    with progress:
        task = progress.add_task("", total=total)

        def report(running: int, failed: int) -> None:
            progress.update(
                task, completed=running, description=f"{failed} failed" if failed else ""
            )

        yield report
