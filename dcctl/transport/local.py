"""Runs commands on the controller itself, for `connection: local` hosts."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence

from dcctl.transport.base import (
    KILL_GRACE_S,
    POLL_INTERVAL_S,
    CommandResult,
    HostError,
    check_cancelled,
)

TIMEOUT_EXIT_CODE = 124


class LocalTransport:
    def __init__(self, cancel: threading.Event | None = None) -> None:
        self._cancel = cancel

    def run(
        self, argv: Sequence[str], deadline: float, stdin: bytes | None = None
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
        outputs: list[bytes] = []
        reader = threading.Thread(
            target=lambda: outputs.extend(proc.communicate(stdin)), daemon=True
        )
        reader.start()
        timed_out = False
        while reader.is_alive():
            reader.join(POLL_INTERVAL_S)
            if self._cancel is not None and self._cancel.is_set():
                _kill_group(proc)
                reader.join(KILL_GRACE_S)
                raise HostError("interrupted", "interrupted before this host finished")
            if time.monotonic() > deadline:
                timed_out = True
                _kill_group(proc)
                reader.join(KILL_GRACE_S)
                break
        stdout, stderr = outputs if len(outputs) == 2 else (b"", b"")
        return CommandResult(
            exit_code=TIMEOUT_EXIT_CODE if timed_out else proc.wait(),
            stdout=stdout.decode(errors="replace"),
            stderr=stderr.decode(errors="replace"),
            timed_out=timed_out,
        )

    def close(self) -> None:
        """Nothing is held open between commands."""


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
