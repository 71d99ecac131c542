"""The one interface every transport implements, and the failures it reports as values."""

from __future__ import annotations

import contextlib
import math
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from dcctl.node.payload import PROGRESS_START, parse_progress_line

# `inventory`: the host was never contacted, because a value it needs cannot be used (see
# Host.unusable); `group`: the host is fine as far as is known, but the job spanning its group
# could not start or was ended because of another node, which that node's own error names;
# the others are what contacting it and running the task ran into.
ErrorKind = Literal[
    "unreachable", "auth", "host_key", "timeout", "runtime", "interrupted", "inventory", "group"
]

# The remote side gets this much longer than its own `timeout` before the controller gives up
# on the channel, so the node-side kill normally wins and reports a clean exit code.
KILL_GRACE_S = 2.0

# What a command killed at its deadline exits with: coreutils `timeout` (remote_timeout_argv)
# exits 124 when it ended the command, and the command shows 137 (128 + SIGKILL) when the
# `-k` kill was needed. The local transport reports its own deadline kill as 124 too.
TIMEOUT_EXIT_CODE = 124
KILLED_EXIT_CODE = 137

# How often blocking loops look at the cancel flag: bounds how long Ctrl-C takes to land.
POLL_INTERVAL_S = 0.1

# A node task prints one payload line of kilobytes, last. A node that prints far more (a login
# script gone wrong) must not make the controller hold it all, a thousand hosts over: only the
# tail is kept, which still holds the payload. Of stderr only the last lines are ever shown.
STDOUT_KEPT_BYTES = 16 * 1024 * 1024
STDERR_KEPT_BYTES = 64 * 1024
# A progress line is a few hundred bytes. One longer than this is not held while it arrives
# (a thousand hosts over, a node printing one endless line must not fill the controller's
# memory): it is dropped, and the next line is read as usual.
PROGRESS_LINE_MAX_BYTES = 64 * 1024

# Called with the object of each progress line a command prints, as it arrives.
ProgressCallback = Callable[[dict[str, Any]], None]
_PROGRESS_MARK = PROGRESS_START.encode()


class HostError(Exception):
    """A host could not be evaluated. Fleet turns it into a value in that host's result."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.message = message

    def __reduce__(self) -> tuple[type[HostError], tuple[ErrorKind, str]]:
        # Crosses from SSH worker processes to the controller; subclasses arrive as the base.
        return HostError, (self.kind, self.message)


class TailBuffer:
    """The last `limit` bytes of a stream, however long the stream runs.

    Locked: a reader thread may still be adding when the command's result is taken.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._lock = threading.Lock()

    def add(self, chunk: bytes) -> None:
        with self._lock:
            self._chunks.append(chunk)
            self._size += len(chunk)
            while self._size - len(self._chunks[0]) >= self._limit:
                self._size -= len(self._chunks.popleft())

    def text(self) -> str:
        with self._lock:
            data = b"".join(self._chunks)
        return data[-self._limit :].decode(errors="replace")


class ProgressLines:
    """Finds the progress lines in a command's stdout while it runs, whatever the chunks it
    arrives in. Only the line being received is held, and only up to PROGRESS_LINE_MAX_BYTES.

    Used by one reader at a time (the thread that reads the stream), so it takes no lock.
    """

    def __init__(self, on_progress: ProgressCallback) -> None:
        self._on_progress = on_progress
        self._partial = bytearray()  # grown in place: a line may come a byte at a time
        # Inside a line already longer than the limit: dropped up to its newline.
        self._skipping = False

    def feed(self, chunk: bytes) -> None:
        end = chunk.rfind(b"\n")
        if end < 0:
            self._hold(chunk)
            return
        if self._skipping:  # the chunk's first newline ends the line being dropped
            block = chunk[chunk.find(b"\n") + 1 : end]
            self._skipping = False
        else:
            block = bytes(self._partial) + chunk[:end]
        self._partial.clear()
        # Most output (a check's payload, library noise) holds no progress: one search, no split.
        if _PROGRESS_MARK in block:
            for line in block.split(b"\n"):
                self._emit(line)
        self._hold(chunk[end + 1 :])

    def _hold(self, data: bytes) -> None:
        if self._skipping or not data:
            return
        if len(self._partial) + len(data) > PROGRESS_LINE_MAX_BYTES:
            self._partial.clear()
            self._skipping = True
        else:
            self._partial += data

    def _emit(self, line: bytes) -> None:
        if _PROGRESS_MARK not in line or len(line) > PROGRESS_LINE_MAX_BYTES:
            return
        progress = parse_progress_line(line.decode(errors="replace"))
        if progress is not None:  # a malformed line is noise like any other
            self._on_progress(progress)


def progress_lines(on_progress: ProgressCallback | None) -> ProgressLines | None:
    return None if on_progress is None else ProgressLines(on_progress)


@dataclass(frozen=True)
class CommandResult:
    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool = False


class Transport(Protocol):
    """Runs argv lists on one host. `deadline` is a time.monotonic() instant.

    `connect()` opens what `run()` would otherwise open on first use, so a caller can wait
    on a host that is slow to answer apart from the hosts doing work.
    """

    def connect(self) -> None: ...

    def run(
        self,
        argv: Sequence[str],
        deadline: float,
        stdin: bytes | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> CommandResult:
        """`on_progress`, if given, is called with each progress line the command prints on
        stdout as it arrives, from a thread of the transport's choosing; stdout is still
        returned whole (its tail) in the result."""
        ...

    def close(self) -> None: ...


def remote_timeout_argv(argv: Sequence[str], seconds: float) -> list[str]:
    """Wrap argv so the node itself kills it when the deadline passes, even if we vanish."""
    whole_seconds = max(1, math.ceil(seconds))
    return ["timeout", "-k", str(int(KILL_GRACE_S)), str(whole_seconds), *argv]


def check_cancelled(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise HostError("interrupted", "interrupted before this host finished")


@contextlib.contextmanager
def holding(slots: threading.BoundedSemaphore, cancel: threading.Event | None) -> Iterator[None]:
    """One of `slots`, waited for a poll interval at a time so Ctrl-C lands while waiting."""
    while not slots.acquire(timeout=POLL_INTERVAL_S):
        check_cancelled(cancel)
    try:
        yield
    finally:
        slots.release()
