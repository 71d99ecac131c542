"""Live progress on stderr. At a terminal: a bar of hosts done, and under it a line for each host
whose node task reports progress (the most recent few). Off a terminal with -v (cron, CI logs):
a plain line per host now and then, so a long run shows in its log that it is alive."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, TextIO, TypeGuard

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

# Host lines under the bar: those that reported last. A thousand hosts cannot all be shown.
SHOWN_HOSTS = 8
# Off a terminal, at most one line per host this often: alive, without flooding the log.
LOG_INTERVAL_S = 5.0
# A string field longer than this is a message or a path, not a label: left out.
SHORT_FIELD_CHARS = 24
# What a progress line shows of one host, at most.
TEXT_MAX_CHARS = 60
# Labels shown first, in this order; other short string fields follow, by key.
_FIRST_FIELDS = ("bench", "job", "dtype", "rank")
# Shown as counts ("3/5", "12/30 s", "64 MiB"), not as labels.
_COUNTED_FIELDS = frozenset({"step", "of", "elapsed_s", "runtime_s", "bytes"})


def progress_text(progress: Mapping[str, Any]) -> str:
    """What a node's progress line says, in a few words: "fio seqread 2/4 12/30 s".

    A progress line's keys are free-form: labels are its short string fields, then `step`
    of `of`, a size in `bytes` and `elapsed_s` of `runtime_s` where they are numbers.
    A gang worker's lines have their own words: "certify step 120/300 loss 0.0412 18,240
    samples/s", and "joined" once a node's ranks are in the job.
    """
    phase = progress.get("phase")
    if phase == "certify":
        return _bounded(_certify_text(progress))
    if phase == "joined":
        # Its node_rank is for the controller's join timeout; a person needs only the word.
        return "joined"
    others = sorted(key for key in progress if key not in _FIRST_FIELDS)
    parts = [
        part
        for key in (*_FIRST_FIELDS, *others)
        if key in progress and key not in _COUNTED_FIELDS
        if (part := _label(key, progress[key]))
    ]
    parts += _counts(progress)
    return _bounded(" ".join(parts) or "running")


def _bounded(text: str) -> str:
    return text if len(text) <= TEXT_MAX_CHARS else text[: TEXT_MAX_CHARS - 1] + "…"


def _certify_text(progress: Mapping[str, Any]) -> str:
    step, of = progress.get("step"), progress.get("of")
    loss, rate = progress.get("loss"), progress.get("samples_per_s")
    parts = ["certify"]
    if _is_number(step):
        parts.append(f"step {_number(step)}" + (f"/{_number(of)}" if _is_number(of) else ""))
    if _is_number(loss):
        parts.append(f"loss {loss:.4g}")
    if _is_number(rate):
        parts.append(f"{rate:,.0f} samples/s")
    return " ".join(parts)


def _label(key: str, value: Any) -> str:
    if isinstance(value, str):
        # Node output reaches a terminal: no escape sequences, no line breaks.
        shown = "".join(char for char in value if char.isprintable()).strip()
        return shown if len(shown) <= SHORT_FIELD_CHARS else ""
    if key == "rank" and _is_number(value):
        return f"rank {_number(value)}"
    return ""


def _counts(progress: Mapping[str, Any]) -> list[str]:
    step, of = progress.get("step"), progress.get("of")
    elapsed, planned = progress.get("elapsed_s"), progress.get("runtime_s")
    size = progress.get("bytes")
    parts = []
    if _is_number(step):
        count = _number(step)
        parts.append(f"{count}/{_number(of)}" if _is_number(of) else f"step {count}")
    if _is_number(size):
        parts.append(_size(size))
    if _is_number(elapsed):
        seconds = f"{elapsed:.0f}/{planned:.0f}" if _is_number(planned) else f"{elapsed:.0f}"
        parts.append(f"{seconds} s")
    return parts


def _is_number(value: Any) -> TypeGuard[float]:
    """A number JSON can carry (NaN is none): not a bool, which Python counts as an int."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024:
            return f"{count:.4g} {unit}"
        count /= 1024
    return f"{count:.4g} TiB"


class HostLines:
    """The latest progress text of the hosts that reported last, at most `limit` of them.

    Locked: rich redraws from its own thread while the run's thread updates."""

    def __init__(self, limit: int = SHOWN_HOSTS) -> None:
        self._limit = limit
        self._texts: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def update(self, host_name: str, text: str) -> None:
        with self._lock:
            self._texts[host_name] = text
            self._texts.move_to_end(host_name)
            while len(self._texts) > self._limit:
                self._texts.popitem(last=False)

    def remove(self, host_name: str) -> None:
        with self._lock:
            self._texts.pop(host_name, None)

    def lines(self) -> list[str]:
        """ "gpu001  gemm bf16 3/5", names padded to one width, oldest report first."""
        with self._lock:
            shown = list(self._texts.items())
        width = max((len(name) for name, _ in shown), default=0)
        return [f"{name:<{width}}  {text}" for name, text in shown]


class _BarAndHosts(Progress):
    def __init__(self, *columns: ProgressColumn, hosts: HostLines, **kwargs: Any) -> None:
        self._hosts = hosts  # before rich's own set-up, which draws a first frame
        super().__init__(*columns, **kwargs)

    def get_renderables(self) -> Iterable[RenderableType]:
        yield from super().get_renderables()
        for line in self._hosts.lines():
            yield Text(line, style="dim", no_wrap=True, overflow="ellipsis")


class HostProgress:
    """`enabled`: progress is wanted at all (not --quiet, not --json). At a terminal the live
    display shows it; elsewhere, only with `verbose`, as plain lines."""

    def __init__(
        self,
        description: str,
        total: int,
        enabled: bool,
        verbose: bool = False,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = sys.stderr if stream is None else stream
        tty = self._stream.isatty()
        self._enabled = enabled and tty
        self._logging = enabled and verbose and not tty
        self._clock = clock
        self._logged_at: dict[str, float] = {}
        self._hosts = HostLines()
        console = Console(stderr=True) if stream is None else Console(file=stream)
        self._progress = _BarAndHosts(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[last]}", style="dim", markup=False),
            TimeElapsedColumn(),
            hosts=self._hosts,
            console=console,
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

    @property
    def wants_node_progress(self) -> bool:
        """Whether node progress is shown at all: if not, the fleet need not pass it on."""
        return self._enabled or self._logging

    def host_done(self, host_name: str, status: str) -> None:
        self._hosts.remove(host_name)
        self._logged_at.pop(host_name, None)
        self._progress.update(self._task, advance=1, last=f"{host_name}: {status}")

    def node_progress(self, host_name: str, progress: Mapping[str, Any]) -> None:
        text = progress_text(progress)
        if self._enabled:
            self._hosts.update(host_name, text)  # drawn at rich's next refresh
        if self._logging:
            self._log(host_name, text)

    def _log(self, host_name: str, text: str) -> None:
        now = self._clock()
        if now - self._logged_at.get(host_name, float("-inf")) < LOG_INTERVAL_S:
            return
        self._logged_at[host_name] = now
        # A log that cannot be written (a closed pipe) must not stop the run.
        with contextlib.suppress(OSError):
            self._stream.write(f"dcctl: {host_name}: {text}\n")
            self._stream.flush()
