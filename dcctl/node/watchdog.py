"""Ends the node's work when the controller goes away.

The controller keeps the task's stdin open for the task's whole life. When it disappears
(Ctrl-C, crash, network loss) sshd closes that pipe; reading EOF there means nobody will read
our result, so the whole process group (the task and anything it started) is killed rather
than left running until its deadline.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

WATCHDOG_ENV = "DCCTL_STDIN_WATCHDOG"


def _wait_for_eof_then_kill() -> None:
    stream = sys.stdin.buffer if sys.stdin is not None else None
    if stream is None:
        return
    while stream.read(4096):
        pass
    os.killpg(os.getpgrp(), signal.SIGKILL)


def start_if_requested() -> None:
    """Only when the controller asked: run by hand, stdin may be a terminal or /dev/null."""
    if os.environ.get(WATCHDOG_ENV) == "1":
        threading.Thread(target=_wait_for_eof_then_kill, daemon=True).start()
