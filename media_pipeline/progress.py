"""Upload progress on a terminal: a bar per file and one for the total, drawn on stderr
with `rich`. With no terminal (a pipe, a file, CI), nothing is drawn at all."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)


class Display(Protocol):
    def sent(self, path: Path) -> Callable[[int], None]:
        """What to call with the bytes of `path` sent so far."""
        ...

    def status(self, path: Path, text: str) -> None: ...


class Silent:
    def sent(self, path: Path) -> Callable[[int], None]:
        return lambda _: None

    def status(self, path: Path, text: str) -> None:
        return None


class Bars:
    def __init__(self, progress: Progress, files: Sequence[tuple[Path, str, int]]) -> None:
        self._progress = progress
        self._lock = threading.Lock()
        self._sent: dict[Path, int] = {}
        self._tasks: dict[Path, TaskID] = {}
        for path, label, size in files:
            self._tasks[path] = progress.add_task(label, total=size, status="waiting")
            self._sent[path] = 0
        total = sum(size for _, _, size in files)
        self._total = progress.add_task(f"{len(files)} files", total=total, status="")

    def sent(self, path: Path) -> Callable[[int], None]:
        def update(sent: int) -> None:
            with self._lock:
                self._sent[path] = sent
                total = sum(self._sent.values())
            self._progress.update(self._tasks[path], completed=sent, status="uploading")
            self._progress.update(self._total, completed=total)

        return update

    def status(self, path: Path, text: str) -> None:
        self._progress.update(self._tasks[path], status=text)


@contextmanager
def display(files: Sequence[tuple[Path, str, int]]) -> Iterator[Display]:
    """Bars for `files` (path, label, size) while the block runs, if stderr is a terminal."""
    # stderr itself, not rich's guess (FORCE_COLOR and the like make it draw on a pipe).
    if not sys.stderr.isatty():
        yield Silent()
        return
    console = Console(stderr=True)
    progress = Progress(
        TextColumn("{task.description}", style="bold"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        # Lines printed to stdout meanwhile go above the bars when stdout is this terminal
        # too; a redirected stdout is left alone.
        redirect_stdout=sys.stdout.isatty(),
        redirect_stderr=False,
    )
    with progress:
        yield Bars(progress, files)
