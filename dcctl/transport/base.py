"""The one interface every transport implements, and the failures it reports as values."""

from __future__ import annotations

import contextlib
import math
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

# `inventory`: the host was never contacted, because a value it needs cannot be used (see
# Host.unusable); the others are what contacting it and running the task ran into.
ErrorKind = Literal[
    "unreachable", "auth", "host_key", "timeout", "runtime", "interrupted", "inventory"
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
        self, argv: Sequence[str], deadline: float, stdin: bytes | None = None
    ) -> CommandResult: ...

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
