"""The one interface every transport implements, and the failures it reports as values."""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

ErrorKind = Literal["unreachable", "auth", "host_key", "timeout", "runtime", "interrupted"]

# The remote side gets this much longer than its own `timeout` before the controller gives up
# on the channel, so the node-side kill normally wins and reports a clean exit code.
KILL_GRACE_S = 2.0

# How often blocking loops look at the cancel flag: bounds how long Ctrl-C takes to land.
POLL_INTERVAL_S = 0.1


class HostError(Exception):
    """A host could not be evaluated. Fleet turns it into a value in that host's result."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.message = message


@dataclass(frozen=True)
class CommandResult:
    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool = False


class Transport(Protocol):
    """Runs argv lists on one host. `deadline` is a time.monotonic() instant."""

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
