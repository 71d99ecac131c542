"""A live progress bar on stderr, shown only to a person watching a terminal."""

from __future__ import annotations

import contextlib
import sys
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class HostProgress:
    def __init__(self, description: str, total: int, enabled: bool) -> None:
        self._enabled = enabled and sys.stderr.isatty()
        self._progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[last]}", style="dim", markup=False),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=True,
            disable=not self._enabled,
        )
        self._task = self._progress.add_task(description, total=total, last="")

    def __enter__(self) -> HostProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # A terminal closed under the run (SIGHUP) fails the last redraw; the run goes on.
        with contextlib.suppress(OSError):
            self._progress.stop()

    def host_done(self, host_name: str, status: str) -> None:
        self._progress.update(self._task, advance=1, last=f"{host_name}: {status}")
