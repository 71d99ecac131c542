"""A benchmark worker must not outlive the process that started it.

torchrun starts each rank in a session of its own, so a SIGKILL to the task's process group
(the node's `timeout -k`, the stdin watchdog) kills torchrun but not the ranks, which would
keep a GPU busy for ever. Each worker asks the kernel to kill it when its parent dies.
"""

from __future__ import annotations

import contextlib
import os
import signal

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent() -> None:
    """Linux only; elsewhere, or without ctypes, nothing happens."""
    parent = os.getppid()
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)
