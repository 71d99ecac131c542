"""Ends the node's work when the controller goes away.

The controller keeps the task's stdin open for the task's whole life. When it disappears
(Ctrl-C, crash, network loss) sshd closes that pipe; reading EOF there means nobody will read
our result, so the whole process group (the task and anything it started) is killed rather
than left running until its deadline.
"""

from __future__ import annotations

import os
import signal
import threading

WATCHDOG_ENV = "DCCTL_STDIN_WATCHDOG"
STDIN_FD = 0


def _wait_for_eof_then_kill() -> None:
    # os.read on the raw descriptor, not sys.stdin: a daemon thread blocked inside a buffered
    # reader holds its lock, and interpreter shutdown then aborts with "Fatal Python error".
    try:
        while os.read(STDIN_FD, 4096):
            pass
    except OSError:
        return  # no usable stdin: nothing to watch
    os.killpg(os.getpgrp(), signal.SIGKILL)


def start_if_requested() -> None:
    """Only when the controller asked: run by hand, stdin may be a terminal or /dev/null."""
    if os.environ.get(WATCHDOG_ENV) == "1":
        threading.Thread(target=_wait_for_eof_then_kill, daemon=True).start()
