"""Runs commands on the controller itself, for `connection: local` hosts."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from typing import IO

from dcctl.transport.base import (
    KILL_GRACE_S,
    POLL_INTERVAL_S,
    STDERR_KEPT_BYTES,
    STDOUT_KEPT_BYTES,
    TIMEOUT_EXIT_CODE,
    CommandResult,
    HostError,
    ProgressCallback,
    ProgressLines,
    TailBuffer,
    check_cancelled,
    progress_lines,
)


class LocalTransport:
    def __init__(self, cancel: threading.Event | None = None) -> None:
        self._cancel = cancel

    def run(
        self,
        argv: Sequence[str],
        deadline: float,
        stdin: bytes | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> CommandResult:
        check_cancelled(self._cancel)
        try:
            # A session of its own, so the whole process tree can be killed at the deadline.
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise HostError("runtime", f"cannot start {argv[0]!r}: {exc.strerror}") from exc
        stdout = _Reader(proc.stdout, STDOUT_KEPT_BYTES, progress_lines(on_progress))
        stderr = _Reader(proc.stderr, STDERR_KEPT_BYTES)
        if stdin is not None and proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.write(stdin)
            proc.stdin.close()
        # With no input, stdin stays open for the command's life, as over SSH: the node
        # runtime treats EOF there as "the controller is gone".
        timed_out = False
        while proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(POLL_INTERVAL_S)
            if self._cancel is not None and self._cancel.is_set():
                _kill_group(proc)
                raise HostError("interrupted", "interrupted before this host finished")
            if time.monotonic() > deadline:
                timed_out = True
                _kill_group(proc)
                proc.wait()
        _kill_group(proc)  # children left behind by a command that exited
        if proc.stdin is not None and not proc.stdin.closed:
            proc.stdin.close()
        return CommandResult(
            exit_code=TIMEOUT_EXIT_CODE if timed_out else proc.returncode,
            stdout=stdout.text(KILL_GRACE_S),
            stderr=stderr.text(KILL_GRACE_S),
            timed_out=timed_out,
        )

    def connect(self) -> None:
        """Nothing to open: each command is a new process."""

    def close(self) -> None:
        """Nothing is held open between commands."""


class _Reader:
    """Drains one pipe in a thread so a chatty command never blocks on a full pipe."""

    def __init__(
        self, pipe: IO[bytes] | None, kept_bytes: int, lines: ProgressLines | None = None
    ) -> None:
        self._kept = TailBuffer(kept_bytes)
        # Progress is passed on from this thread, as it arrives, not when the command ends.
        self._lines = lines
        self._thread = threading.Thread(target=self._drain, args=(pipe,), daemon=True)
        self._thread.start()

    def _drain(self, pipe: IO[bytes] | None) -> None:
        if pipe is not None:
            with pipe:
                fd = pipe.fileno()
                for chunk in iter(lambda: os.read(fd, 65536), b""):
                    self._kept.add(chunk)
                    if self._lines is not None:
                        self._lines.feed(chunk)

    def text(self, wait_s: float) -> str:
        # A grandchild that escaped the kill may still hold the pipe: do not wait forever.
        self._thread.join(wait_s)
        return self._kept.text()


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
